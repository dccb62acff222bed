"""Domain classifiers for adversarial adaptation of segmentation networks (book 7.6).

Two placements, both giving 2-class domain logits (0 = source, 1 = target) meant to sit behind
:func:`scarce.nets.grl.grad_reverse`:

- :class:`Pool5DomainClassifier`: the book's head on FCN-8s' pool5 features, one prediction per image.
- :class:`OutputDomainDiscriminator`: fully convolutional, on the softmax maps, one prediction per pixel
  (output-space adaptation, as in Tsai et al., CVPR 2018: the layouts of the predictions are what differ).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["DOMAIN_HEADS", "OutputDomainDiscriminator", "Pool5DomainClassifier", "create_domain_head"]


class Pool5DomainClassifier(nn.Module):
    """The book's domain classifier: conv 256 3x3, dropout, conv 64 3x3, dropout, conv 32 1x1, global max pool,
    dense 32, 16, 2 (ReLU after every layer but the last).

    Global max pooling makes the head independent of the input size (pool5 is 1/32 of the padded image).

    Args:
        in_channels: channels of the features (512 for VGG16's pool5, ``512 / width_divisor`` for thinner FCN-8s).
        dropout: dropout probability after the first two convolutions.

    Shape:
        - Input: ``(B, in_channels, h, w)``.
        - Output: ``(B, 2)`` domain logits.
    """

    def __init__(self, in_channels: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(256, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv2d(64, 32, 1), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(32, 32), nn.ReLU(inplace=True), nn.Linear(32, 16), nn.ReLU(inplace=True),
            nn.Linear(16, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.pool(self.convs(x)))


class OutputDomainDiscriminator(nn.Module):
    """Fully convolutional discriminator on softmax maps: per-pixel domain logits.

    ``num_layers`` 3x3 convolutions of ``width`` channels with LeakyReLU(0.2) (the usual choice for
    discriminators: no dead units when the features are pushed to fool it), then a 1x1 convolution to 2 logits.
    The first ``num_downsamples`` convolutions have stride 2, trading resolution for receptive field and speed
    on large images; with 0 (the default) the logits have the input's height and width.

    Args:
        in_channels: number of classes of the softmax maps.
        width: channels of the hidden convolutions.
        num_layers: hidden 3x3 convolutions (>= 1).
        num_downsamples: how many of them have stride 2 (0 .. num_layers).

    Shape:
        - Input: ``(B, in_channels, H, W)`` class probabilities.
        - Output: ``(B, 2, H / 2**num_downsamples, W / 2**num_downsamples)`` domain logits (sizes rounded up).
    """

    def __init__(self, in_channels: int, width: int = 64, num_layers: int = 3, num_downsamples: int = 0) -> None:
        super().__init__()
        if num_layers < 1 or not 0 <= num_downsamples <= num_layers:
            raise ValueError(f"OutputDomainDiscriminator: need num_layers >= 1 and 0 <= num_downsamples <= "
                              f"num_layers, got num_layers={num_layers}, num_downsamples={num_downsamples}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            stride = 2 if i < num_downsamples else 1
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            channels = width
        layers.append(nn.Conv2d(channels, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


DOMAIN_HEADS: dict[str, Callable[..., nn.Module]] = {
    "pool5": Pool5DomainClassifier,
    "output": OutputDomainDiscriminator,
}


def create_domain_head(placement: str, **kwargs) -> nn.Module:
    """Build the domain head of a placement (``"pool5"`` or ``"output"``) by name."""
    if placement not in DOMAIN_HEADS:
        raise ValueError(f"unknown domain head placement {placement!r}; valid values are {sorted(DOMAIN_HEADS)}")
    return DOMAIN_HEADS[placement](**kwargs)
