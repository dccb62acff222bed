"""On-disk and generated datasets. Each takes ``root``/``split``/``transform`` and documents its layout."""

from scarce.data.datasets.blobs import Blobs
from scarce.data.datasets.mnist import MNIST
from scarce.data.datasets.mnistm import MNISTM

__all__ = ["Blobs", "MNIST", "MNISTM"]
