"""The book's convolutional VAE for 28x28 grey images (notebook 7.7), in PyTorch."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvEncoder", "ConvDecoder", "ConvVAE", "reparameterize"]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mu + eps * exp(0.5 * logvar)``, ``eps ~ N(0, I)``: differentiable in ``mu`` and ``logvar``.

    ``logvar`` is the log of the *variance*, so the standard deviation is ``exp(0.5 * logvar)``; the book
    multiplied by ``exp(logvar)``, which samples from a different distribution than the KL term assumes.
    """
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * torch.exp(0.5 * logvar)


class ConvEncoder(nn.Module):
    """Conv 32 and 64 (3x3, stride 2, no padding, ReLU: 28 -> 13 -> 6), then dense to ``2 * latent_dim``.

    Shape:
        ``(B, 1, 28, 28)`` -> ``mu``, ``logvar`` each ``(B, latent_dim)``
    """

    def __init__(self, latent_dim: int = 2, channels: tuple[int, int] = (32, 64)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels[0], 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels[0], channels[1], 3, stride=2), nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.head = nn.Linear(channels[1] * 6 * 6, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """Dense to 7x7x32 (ReLU), transposed conv 64 and 32 (3x3, stride 2: 7 -> 14 -> 28), transposed conv to 1.

    Returns logits; ``sigmoid(logits)`` is the image. Keeping logits lets the BCE loss use the numerically
    safe ``binary_cross_entropy_with_logits`` (which autocast accepts).

    Shape:
        ``(B, latent_dim)`` -> ``(B, 1, 28, 28)``
    """

    def __init__(self, latent_dim: int = 2, channels: tuple[int, int] = (64, 32), base_channels: int = 32) -> None:
        super().__init__()
        self.base_channels = base_channels
        self.fc = nn.Sequential(nn.Linear(latent_dim, base_channels * 7 * 7), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.ConvTranspose2d(base_channels, channels[0], 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels[0], channels[1], 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels[1], 1, 3, stride=1, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, self.base_channels, 7, 7))


class ConvVAE(nn.Module):
    """Encoder + reparameterisation + decoder.

    Args:
        latent_dim: Size of the latent code (2 in the book, so that the latent space can be drawn).

    Shape:
        ``forward(x)``: ``(B, 1, 28, 28)`` -> ``(logits (B, 1, 28, 28), mu (B, D), logvar (B, D))``
    """

    def __init__(self, latent_dim: int = 2) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(latent_dim)
        self.decoder = ConvDecoder(latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Sampling in eval too: the test loss is then the same one-sample ELBO estimate as in training.
        mu, logvar = self.encoder(x)
        return self.decoder(reparameterize(mu, logvar)), mu, logvar
