"""The GAN of notebook 7.8 as a LightningModule: manual optimisation, three losses, an EMA generator.

Distributed training: every backward runs inside ``LightningOptimizer.toggle_model(sync_grad=False)``, which
toggles ``requires_grad`` to the optimizer being stepped *and* keeps DDP's reducer out of it; the gradients of
the network being stepped are then averaged across ranks with one ``all_reduce`` before ``step()``. DDP's
reducer expects every parameter it wraps to get a gradient in every backward, which an alternating GAN step
never satisfies (the discriminator step leaves the generator without gradients and the other way round), and
it does not support the double backward of the gradient penalty; averaging the one network's gradients
explicitly needs neither ``find_unused_parameters`` nor ``static_graph``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.distributed as dist
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from scarce._errors import ScarceError
from scarce.metrics.means import SplitMeans
from scarce.nets.dcgan import Discriminator, Generator

__all__ = ["GAN", "LOSSES", "discriminator_loss", "generator_loss", "gradient_penalty", "all_reduce_gradients"]

Loss = Literal["nonsaturating", "hinge", "wgan-gp"]
LOSSES = get_args(Loss)


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from its logits on real and generated images (the penalty is added separately).

    - ``nonsaturating``: binary cross-entropy, real -> 1, fake -> 0 (the book).
    - ``hinge``: ``relu(1 - D(real)) + relu(1 + D(fake))``.
    - ``wgan-gp``: ``D(fake) - D(real)`` (the critic's Wasserstein estimate, negated).

    Shape:
        ``(B,)``, ``(B,)`` -> scalar
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "nonsaturating":
        return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss: ``-log D(G(z))`` (non-saturating) or ``-D(G(z))`` (hinge, WGAN-GP).

    Shape:
        ``(B,)`` -> scalar
    """
    fake_logits = fake_logits.float()
    if kind == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    return -fake_logits.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    r"""WGAN-GP penalty :math:`\mathbb{E}_{\hat x}[(\lVert\nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2]` on random
    interpolates :math:`\hat x = \alpha x + (1 - \alpha) \tilde x`.

    Under ``16-mixed`` the input gradient is taken of the *scaled* critic output, so that small fp16 values
    do not flush to zero, and divided by the scale before the norm: the penalty is the one of the true
    (unscaled) gradient. An overflow gives ``inf`` here, and the loss scaler then skips the step as usual.

    Shape:
        ``real``, ``fake``: ``(B, C, H, W)`` -> scalar
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    outputs = critic(interpolates).float().sum()
    if scaler is not None and scaler.is_enabled():
        outputs = scaler.scale(outputs)
    (grad,) = torch.autograd.grad(outputs, interpolates, create_graph=True)
    grad = grad.float().flatten(1)
    if scaler is not None and scaler.is_enabled():
        grad = grad / scaler.get_scale()
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def all_reduce_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module`` over all ranks (one flat all-reduce); a no-op without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(reduced)


class GAN(LightningModule):
    """DCGAN on 28x28 grey images with non-saturating (the book), hinge or WGAN-GP losses.

    Each training batch makes one discriminator step; every ``n_critic``-th batch also makes one generator
    step and updates the exponential moving average of the generator's weights, which :meth:`generate`
    and :meth:`sample` use. Images are scaled to [-1, 1] for the networks and back to [0, 1] on output.

    Args:
        noise_dim: Noise size (2 in the book, for the latent walk).
        loss: ``"nonsaturating"``, ``"hinge"`` or ``"wgan-gp"``.
        generator_channels: Generator widths (the book: 512, 256, 128, 64).
        discriminator_channels: Discriminator widths (the book: 64, 128, 256).
        discriminator_norm: ``"batch"`` (the book) or ``"none"`` (for WGAN-GP).
        dropout: Discriminator dropout.
        lr_g: Generator Adam learning rate.
        lr_d: Discriminator Adam learning rate.
        beta1: Adam beta1 (both optimizers).
        beta2: Adam beta2 (both optimizers).
        n_critic: Discriminator steps per generator step.
        gp_weight: Weight of the gradient penalty (``wgan-gp`` only).
        ema_decay: Decay of the generator's weight average (``ema = decay * ema + (1 - decay) * weights``).
    """

    def __init__(self, noise_dim: PositiveInt = 2, loss: Loss = "nonsaturating",
                 generator_channels: tuple[PositiveInt, ...] = (512, 256, 128, 64),
                 discriminator_channels: tuple[PositiveInt, ...] = (64, 128, 256),
                 discriminator_norm: Literal["batch", "none"] = "batch", dropout: ClosedUnitInterval = 0.3,
                 lr_g: PositiveFloat = 2e-4, lr_d: PositiveFloat = 2e-4, beta1: ClosedUnitInterval = 0.5,
                 beta2: ClosedUnitInterval = 0.999, n_critic: PositiveInt = 1, gp_weight: NonNegativeFloat = 10.0,
                 ema_decay: NonNegativeFloat = 0.999) -> None:
        super().__init__()
        if ema_decay >= 1.0:  # [0, 1): no type says it
            raise ScarceError(f"GAN: ema_decay must be in [0, 1), got {ema_decay} (`--model.ema_decay`)")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.latent_dim = noise_dim
        self.generator = Generator(noise_dim, channels=tuple(generator_channels))
        self.discriminator = Discriminator(tuple(discriminator_channels), norm=discriminator_norm, dropout=dropout)
        # The average holds no gradients: frozen, so that DDP does not wrap it and no optimizer sees it.
        self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay),
                                           use_buffers=True).requires_grad_(False)
        self.eval_means = nn.ModuleDict({stage: SplitMeans(["d_loss", "d_real", "d_fake", "gp", "g_loss"])
                                         for stage in ("val", "test")})
        self._noise_generator: torch.Generator | None = None

    def _noise(self, num: int) -> torch.Tensor:
        # Lightning seeds every rank alike; an own stream per rank keeps the ranks' noise independent.
        if self._noise_generator is None:
            self._noise_generator = torch.Generator().manual_seed(torch.initial_seed() + 7919 * self.global_rank)
        return torch.randn(num, self.hparams.noise_dim, generator=self._noise_generator).to(self.device)

    # The noise stream is training state: a fit resumed from a checkpoint continues it (bit-identical resume,
    # docs/reliability.md). Every rank's stream is kept: the checkpoint is written by rank 0 from all of them.
    _NOISE_KEY = "gan_noise_generator_states"

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._noise_generator is not None:
            checkpoint[self._NOISE_KEY] = self.all_gather(self._noise_generator.get_state()).reshape(
                self.trainer.world_size, -1).cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get(self._NOISE_KEY)
        if self._trainer is None:  # load_from_checkpoint for sampling: no training stream to continue
            return
        if states is not None and len(states) == self.trainer.world_size:  # another world size: fresh streams
            self._noise_generator = torch.Generator()
            self._noise_generator.set_state(states[self.global_rank].contiguous())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        out = {"d_loss": discriminator_loss(self.hparams.loss, real_logits, fake_logits),
               "d_real": real_logits.float().mean(), "d_fake": fake_logits.float().mean()}
        if self.hparams.loss == "wgan-gp" and torch.is_grad_enabled():
            scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
            out["gp"] = gradient_penalty(self.discriminator, real, fake, scaler)
            out["d_loss"] = out["d_loss"] + self.hparams.gp_weight * out["gp"]
        return out

    def _g_loss(self, num: int) -> torch.Tensor:
        return generator_loss(self.hparams.loss, self.discriminator(self.generator(self._noise(num))))

    def _log(self, values: dict[str, torch.Tensor], stage: str, batch_size: int = 1) -> None:
        if stage != "train":  # the split's means over all ranks (see scarce.metrics.means), logged at the epoch's end
            self.eval_means[stage].update(values, weight=batch_size)
            return
        for name, value in values.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name in ("d_loss", "g_loss"), on_step=True,
                     on_epoch=True)

    def _log_eval_means(self, stage: str) -> None:
        for name, value in self.eval_means[stage].compute_and_reset().items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("d_loss", "g_loss"))

    def on_validation_epoch_end(self) -> None:
        self._log_eval_means("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval_means("test")

    def _common_step(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        """Both losses on a batch without updating anything (validation / test)."""
        real = batch["image"] * 2 - 1
        values = self._d_loss(real, self.generator(self._noise(len(real))))
        values["g_loss"] = self._g_loss(len(real))
        self._log(values, stage, len(real))
        return values

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real = batch["image"] * 2 - 1
        with opt_d.toggle_model(sync_grad=False):
            with torch.no_grad():
                fake = self.generator(self._noise(len(real)))
            values = self._d_loss(real, fake)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(values["d_loss"])
        all_reduce_gradients(self.discriminator)
        opt_d.step()
        if (batch_idx + 1) % self.hparams.n_critic == 0:
            with opt_g.toggle_model(sync_grad=False):
                g_loss = self._g_loss(len(real))
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
            all_reduce_gradients(self.generator)
            opt_g.step()
            self.generator_ema.update_parameters(self.generator)
            values["g_loss"] = g_loss
        self._log(values, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._common_step(batch, "test")

    @torch.no_grad()
    def generate(self, z: torch.Tensor, ema: bool = True) -> torch.Tensor:
        """Images from noise ``(B, noise_dim)``: ``(B, 1, 28, 28)`` in [0, 1].

        ``ema=True`` uses the averaged generator (the default for figures and metrics); ``ema=False`` the
        trained one (better for very short runs, whose average still holds much of the initial weights).
        """
        net = self.generator_ema.module if ema else self.generator
        was_training = net.training
        net.eval()
        images = net(z.to(self.device)).float().add(1).div(2)
        net.train(was_training)
        return images

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None, ema: bool = True) -> torch.Tensor:
        """Draw ``num`` images: ``(num, 1, 28, 28)`` in [0, 1] (``ema`` as in :meth:`generate`)."""
        return self.generate(torch.randn(num, self.hparams.noise_dim, generator=generator), ema=ema)

    def configure_optimizers(self):
        betas = (self.hparams.beta1, self.hparams.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr_g, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr_d, betas=betas)
        return [opt_g, opt_d]
