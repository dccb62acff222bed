"""Small MLPs for the book's 3-D blobs (notebook 7.5)."""

from __future__ import annotations

from torch import nn

__all__ = ["BlobFeatures", "BlobClassifier", "BlobDomainClassifier"]


class BlobFeatures(nn.Sequential):
    """Input ``(B, 3)`` points -> ``(B, hidden)`` features."""

    def __init__(self, in_features: int = 3, hidden: int = 16) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.out_features = hidden


class BlobClassifier(nn.Sequential):
    def __init__(self, in_features: int = 16, num_classes: int = 2) -> None:
        super().__init__(nn.Linear(in_features, num_classes))


class BlobDomainClassifier(nn.Sequential):
    def __init__(self, in_features: int = 16, hidden: int = 16) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))
