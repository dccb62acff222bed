"""The book's DCGAN-style generator and discriminator for 28x28 grey images (notebook 7.8), in PyTorch."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Generator", "Discriminator"]


class UpBlock(nn.Sequential):
    """Transposed conv 4x4, stride 2 (doubles the size) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DownBlock(nn.Sequential):
    """Conv 5x5, stride 2 (halves the size, rounding up) -> [norm] -> LeakyReLU 0.2 -> Dropout."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool, dropout: float) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
        super().__init__(*layers)


class Generator(nn.Module):
    """Dense to 4x4x``channels[0]`` (BN, ReLU), transposed convs to ``channels[1:]`` (4 -> 8 -> 16 -> 32),
    a 3x3 conv to the image channels, a bilinear resize to ``image_size`` and tanh.

    Args:
        noise_dim: Size of the input noise (2 in the book, so that the latent walk can be drawn).
        channels: Widths of the dense feature map and of each transposed conv (the book: 512, 256, 128, 64).
        out_channels: Image channels.
        image_size: Output side length.

    Shape:
        ``(B, noise_dim)`` -> ``(B, out_channels, image_size, image_size)`` in [-1, 1]
    """

    def __init__(self, noise_dim: int = 2, channels: tuple[int, ...] = (512, 256, 128, 64), out_channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        self.noise_dim, self.image_size, self.base = noise_dim, image_size, channels[0]
        self.fc = nn.Sequential(nn.Linear(noise_dim, channels[0] * 16, bias=False),
                                nn.BatchNorm1d(channels[0] * 16), nn.ReLU(inplace=True))
        self.body = nn.Sequential(*(UpBlock(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:])))
        self.to_image = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.to_image(self.body(self.fc(z).view(-1, self.base, 4, 4)))
        if x.shape[-1] != self.image_size:
            # In float32: the antialiased resize has no bfloat16 / float16 kernel on CPU.
            x = F.interpolate(x.float(), size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return torch.tanh(x)


class Discriminator(nn.Module):
    """Convs 64, 128, 256 (5x5, stride 2: 28 -> 14 -> 7 -> 4) with LeakyReLU and dropout, then one logit.

    BatchNorm follows the second and third conv as in the book (``norm="batch"``). WGAN-GP penalises each
    sample's gradient on its own, which batch statistics break, so use ``norm="none"`` there.

    Args:
        channels: Widths of the three convs.
        in_channels: Image channels.
        image_size: Input side length.
        norm: ``"batch"`` or ``"none"``.
        dropout: Dropout after each conv.

    Shape:
        ``(B, in_channels, image_size, image_size)`` -> logits ``(B,)``
    """

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), in_channels: int = 1, image_size: int = 28,
                 norm: Literal["batch", "none"] = "batch", dropout: float = 0.3) -> None:
        super().__init__()
        blocks, size = [], image_size
        for i, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels)):
            blocks.append(DownBlock(c_in, c_out, norm=norm == "batch" and i > 0, dropout=dropout))
            size = (size + 1) // 2
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(channels[-1] * size * size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)
