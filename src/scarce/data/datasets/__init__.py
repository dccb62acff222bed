"""On-disk and generated datasets. Each takes ``root``/``split``/``transform`` and documents its layout."""

from scarce.data.datasets.blobs import Blobs
from scarce.data.datasets.cityscapes import Cityscapes
from scarce.data.datasets.mnist import MNIST
from scarce.data.datasets.mnistm import MNISTM
from scarce.data.datasets.segmentation_shards import SegmentationShards
from scarce.data.datasets.synthia import SYNTHIA

__all__ = ["Blobs", "Cityscapes", "MNIST", "MNISTM", "SYNTHIA", "SegmentationShards"]
