"""On-disk and generated datasets. Each takes torchvision's ``root`` / ``split`` / ``transform`` / ``target_transform`` /
``transforms`` (see :mod:`scarce.shards.samples`) and documents its layout."""

from scarce.data.datasets.blobs import Blobs
from scarce.data.datasets.cityscapes import Cityscapes
from scarce.data.datasets.mnist import MNIST
from scarce.data.datasets.mnistm import MNISTM
from scarce.data.datasets.segmentation_shards import SegmentationShards
from scarce.data.datasets.synthia import SYNTHIA
from scarce.data.datasets.tfds import TFDSDataset

__all__ = ["Blobs", "Cityscapes", "MNIST", "MNISTM", "SYNTHIA", "SegmentationShards", "TFDSDataset"]
