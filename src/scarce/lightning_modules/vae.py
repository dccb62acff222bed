"""The variational autoencoder of notebook 7.7 as a LightningModule."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from scarce.metrics.means import SplitMeans
from scarce.nets.vae import ConvVAE
from scarce.optim import as_factory, configure_optimizer, keep_specs, spec

__all__ = ["VAE", "gaussian_kl", "reconstruction_loss"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL divergence of :math:`N(\mu, \mathrm{diag}(e^{\log\sigma^2}))` from :math:`N(0, I)`, per sample.

    .. math:: \mathrm{KL} = -\tfrac12 \sum_j \left(1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2\right)

    Shape:
        ``(B, D)``, ``(B, D)`` -> ``(B,)``
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Reconstruction error summed over pixels, per sample: squared error of ``sigmoid(logits)`` or BCE.

    Shape:
        ``(B, C, H, W)``, ``(B, C, H, W)`` -> ``(B,)``
    """
    logits, target = logits.float(), target.float()
    if kind == "mse":
        per_pixel = F.mse_loss(torch.sigmoid(logits), target, reduction="none")
    else:
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_pixel.flatten(1).sum(dim=1)


class VAE(LightningModule):
    """Convolutional VAE; loss = summed reconstruction + ``beta`` * KL, per image, averaged over the batch.

    With ``reconstruction="mse"`` and ``beta=1`` this is the book's loss (its notebook reports 36.2 at
    epoch 59, from a sampler that used ``exp(logvar)`` as the standard deviation, so not comparable).

    Args:
        latent_dim: Latent code size (2 lets the callbacks draw the 20x20 latent walk).
        reconstruction: ``"mse"`` (the book) or ``"bce"``.
        beta: Weight of the KL term.
        optimizer: The optimizer (default Adam, lr 1e-3; see :mod:`scarce.optim`).
        lr_scheduler: The learning-rate schedule (default none; e.g. ``torch.optim.lr_scheduler.CosineAnnealingLR``
            with ``T_max`` the number of epochs, stepped every epoch).
    """

    def __init__(self, latent_dim: PositiveInt = 2, reconstruction: Literal["mse", "bce"] = "mse",
                 beta: NonNegativeFloat = 1.0, optimizer: OptimizerCallable = spec("torch.optim.Adam", lr=1e-3),
                 lr_scheduler: LRSchedulerCallable | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_specs(self.hparams, "optimizer", "lr_scheduler")
        self.optimizer_factory = as_factory(optimizer)
        self.lr_scheduler_factory = None if lr_scheduler is None else as_factory(lr_scheduler)
        self.latent_dim = latent_dim
        self.net = ConvVAE(latent_dim=latent_dim)
        self.eval_means = nn.ModuleDict({stage: SplitMeans(["loss", "recon", "kl"]) for stage in ("val", "test")})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net(x)

    def _common_step(self, batch: dict, stage: str) -> torch.Tensor:
        image = batch["image"]
        logits, mu, logvar = self.net(image)
        recon = reconstruction_loss(logits, image, self.hparams.reconstruction).mean()
        kl = gaussian_kl(mu, logvar).mean()
        loss = recon + self.hparams.beta * kl
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
            self.log("train/recon", recon, on_step=False, on_epoch=True)
            self.log("train/kl", kl, on_step=False, on_epoch=True)
        else:  # the split's means over all ranks (see scarce.metrics.means), logged at the epoch's end
            self.eval_means[stage].update({"loss": loss, "recon": recon, "kl": kl}, weight=len(image))
        return loss

    def _log_eval_means(self, stage: str) -> None:
        for name, value in self.eval_means[stage].compute_and_reset().items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "loss")

    def on_validation_epoch_end(self) -> None:
        self._log_eval_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_means("test")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "test")

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latent codes ``(B, latent_dim)`` into images ``(B, 1, 28, 28)`` in [0, 1]."""
        return torch.sigmoid(self.net.decoder(z.to(self.device)).float())

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode to the posterior mean and decode: ``(B, 1, 28, 28)`` -> ``(B, 1, 28, 28)`` in [0, 1]."""
        mu, _ = self.net.encoder(x.to(self.device))
        return self.generate(mu)

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``num`` images from the prior: ``(num, 1, 28, 28)`` in [0, 1]."""
        return self.generate(torch.randn(num, self.latent_dim, generator=generator))

    def configure_optimizers(self):
        return configure_optimizer(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory,
                                   lambda: self.trainer.estimated_stepping_batches)
