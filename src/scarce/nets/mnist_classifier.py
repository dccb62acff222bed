"""A small CNN for MNIST whose penultimate features serve as the offline feature space of FID / KID / IS."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MNISTClassifier", "MNIST_MEAN", "MNIST_STD"]

# Normalisation lives inside the network so that every caller (training, metrics) feeds plain [0, 1] images.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class ConvBlock(nn.Sequential):
    """Conv 5x5 (same) -> BatchNorm -> ReLU -> MaxPool 2: halves the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )


class MNISTClassifier(nn.Module):
    """Two conv blocks (32, 64 channels), a dense feature layer, a 10-way linear head.

    Args:
        channels: Output channels of the two conv blocks.
        num_features: Width of the penultimate (feature) layer.
        dropout: Dropout before the head.
        num_classes: Number of classes.

    Shape:
        - input: ``(B, 1, 28, 28)`` in [0, 1]
        - :meth:`forward_features`: ``(B, num_features)``
        - :meth:`forward`: logits ``(B, num_classes)``
    """

    def __init__(self, channels: tuple[int, int] = (32, 64), num_features: int = 128, dropout: float = 0.3,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(ConvBlock(1, channels[0]), ConvBlock(channels[0], channels[1]), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(channels[1] * 7 * 7, num_features), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body((x - MNIST_MEAN) / MNIST_STD))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
