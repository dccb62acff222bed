"""On-disk datasets. Each takes ``root``, ``split`` and ``transform`` and documents its layout."""

from scarce.data.datasets.mnist import MNIST

__all__ = ["MNIST"]
