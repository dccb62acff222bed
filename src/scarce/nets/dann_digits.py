"""The DANN paper's MNIST -> MNIST-M networks (Ganin et al., JMLR 2016, figure 4a), with batch norm."""

from __future__ import annotations

from torch import nn

__all__ = ["DigitFeatures", "DigitClassifier", "DigitDomainClassifier", "FEATURE_DIM"]

FEATURE_DIM = 48 * 4 * 4  # conv 5x5 -> pool -> conv 5x5 -> pool turns 28x28 into 48 maps of 4x4


class DigitFeatures(nn.Sequential):
    """conv 5x5 x32 -> pool -> conv 5x5 x48 -> pool -> flatten. Input ``(B, 3, 28, 28)``, output ``(B, 768)``."""

    def __init__(self, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 32, 5), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.Dropout2d(dropout), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.out_features = FEATURE_DIM


class DigitClassifier(nn.Sequential):
    """fc 100 -> fc 100 -> fc ``num_classes`` (logits)."""

    def __init__(self, in_features: int = FEATURE_DIM, num_classes: int = 10) -> None:
        super().__init__(
            nn.Linear(in_features, 100), nn.BatchNorm1d(100), nn.ReLU(inplace=True),
            nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(inplace=True),
            nn.Linear(100, num_classes),
        )


class DigitDomainClassifier(nn.Sequential):
    """fc 100 -> fc 2 (domain logits: 0 source, 1 target)."""

    def __init__(self, in_features: int = FEATURE_DIM) -> None:
        super().__init__(nn.Linear(in_features, 100), nn.BatchNorm1d(100), nn.ReLU(inplace=True), nn.Linear(100, 2))
