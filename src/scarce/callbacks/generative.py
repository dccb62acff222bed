"""Image grids for generative models: samples from fixed noise, reconstructions, and the 2-D latent walk.

The callbacks work with any LightningModule that has an integer ``latent_dim`` and a
``generate(z: (B, latent_dim)) -> (B, C, H, W) in [0, 1]`` method (``scarce.lightning_modules.vae.VAE`` and
``scarce.lightning_modules.gan.GAN``); :class:`ReconstructionGrid` also needs ``reconstruct(x)``.
Each writes ``<log_dir>/figures/<name>_epoch<NNN>.png`` and, when a TensorBoardLogger is attached, an image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from scarce._errors import ScarceError

__all__ = ["SampleGrid", "ReconstructionGrid", "LatentWalk", "latent_walk_codes"]


def latent_walk_codes(steps: int = 20, extent: float = 1.5) -> torch.Tensor:
    """The ``steps x steps`` grid of 2-D codes over ``[-extent, extent]^2``, row-major, top row = highest y.

    Shape:
        ``(steps * steps, 2)``
    """
    axis = torch.linspace(-extent, extent, steps)
    ys, xs = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


class _GridCallback(Callback):
    name = "grid"

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ScarceError(f"{type(self).__name__}: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs

    def _check(self, pl_module: LightningModule, needs: tuple[str, ...] = ("generate", "latent_dim")) -> None:
        missing = [attr for attr in needs if not hasattr(pl_module, attr)]
        if missing:
            raise ScarceError(f"{type(self).__name__} needs a LightningModule with {', '.join(needs)}; "
                              f"{type(pl_module).__name__} lacks {', '.join(missing)}")

    def images(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        raise NotImplementedError

    def nrow(self, num_images: int) -> int:
        return max(1, int(round(num_images ** 0.5)))

    @rank_zero_only
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            images = self.images(trainer, pl_module)
        finally:
            pl_module.train(was_training)
        if images is None:
            return
        grid = make_grid(images.float().cpu().clamp(0, 1), nrow=self.nrow(len(images)), padding=1)
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"{self.name}_epoch{trainer.current_epoch:03d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(self.name, grid, global_step=trainer.global_step)


class SampleGrid(_GridCallback):
    """Images generated from the same fixed noise every epoch, so that progress is visible frame to frame.

    Args:
        num_samples: Images in the grid (a square number gives a square grid).
        seed: Seed of the fixed noise.
        every_n_epochs: Draw every this many epochs.
    """

    name = "samples"

    def __init__(self, num_samples: int = 64, seed: int = 0, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs)
        self.num_samples, self.seed = num_samples, seed
        self._noise: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(pl_module)
        generator = torch.Generator().manual_seed(self.seed)
        self._noise = torch.randn(self.num_samples, pl_module.latent_dim, generator=generator)

    def images(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        return pl_module.generate(self._noise.to(pl_module.device))


class ReconstructionGrid(_GridCallback):
    """Validation images (odd rows) above their reconstructions (even rows).

    Args:
        num_images: Validation images to reconstruct (the first ones of the validation set).
        every_n_epochs: Draw every this many epochs.
    """

    name = "reconstructions"

    def __init__(self, num_images: int = 32, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs)
        self.num_images = num_images

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(pl_module, ("reconstruct",))

    def nrow(self, num_images: int) -> int:
        return 8

    def images(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        loaders = trainer.val_dataloaders
        if loaders is None:
            return None
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        batch = next(iter(loader))["image"][: self.num_images].to(pl_module.device)
        recon = pl_module.reconstruct(batch)
        rows = []
        for start in range(0, len(batch), 8):
            rows += [batch[start:start + 8], recon[start:start + 8]]
        return torch.cat(rows)


class LatentWalk(_GridCallback):
    """The book's figure: decode a ``steps x steps`` grid of 2-D codes over ``[-extent, extent]^2``.

    Skipped (with no error) when the module's latent size is not 2.

    Args:
        steps: Codes per axis (20 in the book).
        extent: Half-width of the square walked (1.5 in the book).
        every_n_epochs: Draw every this many epochs.
    """

    name = "latent_walk"

    def __init__(self, steps: int = 20, extent: float = 1.5, every_n_epochs: int = 1) -> None:
        super().__init__(every_n_epochs)
        self.steps, self.extent = steps, extent

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(pl_module)

    def nrow(self, num_images: int) -> int:
        return self.steps

    def images(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor | None:
        if pl_module.latent_dim != 2:
            return None
        return pl_module.generate(latent_walk_codes(self.steps, self.extent).to(pl_module.device))
