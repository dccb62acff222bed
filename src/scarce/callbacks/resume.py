"""Checkpoints a stopped fit resumes from exactly: ``last.ckpt`` on an interval, at the end and on SIGTERM.

Every experiment config lists :class:`ResumeCheckpoint` with a fixed ``dirpath`` (``runs/<experiment>/checkpoints``),
so ``scarce fit --config X.yaml --ckpt_path last`` finds the previous run's ``last.ckpt`` (Lightning resolves
``last`` by listing the ``dirpath`` of each ``ModelCheckpoint``; without a fixed one that folder is under the new
run's ``version_N`` and holds nothing). What makes the resumed run equal to an uninterrupted one, bit for bit on
CPU with ``--trainer.deterministic true`` (docs/reliability.md, "Resuming training"):

- the training data position: the DataModules save ``(epoch, batches done)`` and their samplers replay the order
  (:mod:`scarce.datamodules.resumable`);
- the global RNG states (torch, CUDA, numpy, random), saved here and restored when training restarts, for models
  that draw random numbers (dropout, VAE sampling; the GAN saves its own noise stream);
- :class:`StochasticWeightAveraging`, which sets up its schedule in ``on_train_epoch_start``, a hook Lightning does
  not call for an epoch resumed in the middle (and which, unlike Lightning's, keeps the model's own learning-rate
  schedule unless told otherwise).

SIGTERM (what SLURM sends before a preemption or at the time limit): Lightning's signal connector sets
``trainer.received_sigterm`` and raises ``SIGTERMException`` at the end of the current batch, which exits 0 and
saves nothing. :class:`ResumeCheckpoint` writes ``last.ckpt`` in that batch's ``on_train_batch_end`` (or, if the
signal comes during validation, when the exception passes), and ``scarce fit`` exits with status 143.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse.typing import PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import StochasticWeightAveraging as _LightningSWA
from lightning.pytorch.utilities.exceptions import SIGTERMException

from scarce._errors import ScarceError

__all__ = ["ResumeCheckpoint", "StochasticWeightAveraging", "rng_states", "set_rng_states"]


def rng_states() -> dict[str, Any]:
    """The global RNG states as tensors and ints, which ``torch.load(weights_only=True)`` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    states = {"torch": torch.get_rng_state(), "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                        gauss],
              "python": [version, list(python_state), gauss_next]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, python_state, gauss_next = states["python"]
    random.setstate((version, tuple(python_state), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeCheckpoint(ModelCheckpoint):
    """Writes ``dirpath/last.ckpt`` every ``every_n_batches`` training batches, on SIGTERM and when training ends.

    Each write goes to ``last.ckpt.partial`` first and is renamed over ``last.ckpt``, so a kill during the write
    leaves the previous ``last.ckpt`` whole. Unlike ``ModelCheckpoint(save_last=True)``, ``last.ckpt`` does not
    depend on a monitored metric improving. Keep a ``ModelCheckpoint(monitor=...)`` next to it for the best
    weights (without ``save_last``: this callback owns ``last.ckpt``).

    Args:
        dirpath: The run's fixed checkpoint folder, e.g. ``runs/dann_blobs/checkpoints``.
        every_n_batches: Training batches between two writes (a batch is one training step, or one round of the
            GAN's optimisers).
    """

    def __init__(self, dirpath: str, every_n_batches: PositiveInt = 200) -> None:
        # No top-k files and no epoch trigger: the parent's hooks then never write; this class decides when.
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, every_n_epochs=0,
                         enable_version_counter=False)
        self.every_n_batches = every_n_batches
        self._saved_at: int | None = None
        self._rng_to_restore: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=str(self.dirpath))

    @staticmethod
    def _batches_done(trainer: Trainer) -> int:
        # Restored from the checkpoint with the loops, so the interval continues across resumes.
        return trainer.fit_loop.epoch_loop.batch_progress.total.processed

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = self._batches_done(trainer)
        if trainer.received_sigterm or done % self.every_n_batches == 0:
            self.write_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pass  # the parent would rewrite last.ckpt here; the interval and the end decide

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.write_last(trainer)  # the final weights (after SWA's transfer: checkpoint callbacks run last)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # A SIGTERM during validation stops there, after no on_train_batch_end of ours could see it.
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            self.write_last(trainer)

    def write_last(self, trainer: Trainer) -> None:
        """Write ``last.ckpt`` now, unless it already holds this batch."""
        done = self._batches_done(trainer)
        if self._saved_at == done or trainer.sanity_checking or trainer.fast_dev_run:
            return
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        partial = path.with_name(path.name + ".partial")
        self.last_model_path = str(path)  # part of the state written below
        trainer.save_checkpoint(partial, self.save_weights_only)  # writes on global rank 0, then a barrier
        if trainer.is_global_zero:
            os.replace(partial, path)
        trainer.strategy.barrier("ResumeCheckpoint.write_last")
        self._saved_at = done
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = str(path)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._rng_to_restore = state_dict.get("rng")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Restored here, after the sanity check and the first fetch of the resumed run, which the uninterrupted
        # run did not do at this point.
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        self._saved_at = self._batches_done(trainer)  # the resumed state is already on disk


class StochasticWeightAveraging(_LightningSWA):
    """Lightning's SWA that keeps the model's learning-rate schedule by default, and resumes in the middle of an epoch.

    Weight averaging from ``swa_epoch_start`` on, once per epoch; the average replaces the weights at the end (with
    batch norm, after one more epoch that recomputes its statistics).

    - ``swa_lrs: null`` (the default): only the weights are averaged; the model's optimizer and schedule (DANN's
      annealing, say) run to the end untouched.
    - ``swa_lrs`` given: Lightning's SWA, whose ``SWALR`` anneals to ``swa_lrs`` and holds it. A model that
      schedules its own learning rate is then refused in ``on_fit_start`` with a message naming both ways out,
      instead of Lightning's swap of its schedule for ``SWALR`` from ``swa_epoch_start`` on with an info line.

    Resumable mid-epoch: the parent swaps in its SWALR schedule (with the state saved in the checkpoint) in
    ``on_train_epoch_start``, which Lightning does not call for an epoch resumed in the middle: the rest of that epoch
    then ran with no schedule at all, and the next epoch one step behind. Here the hook runs at ``on_train_start`` of
    such a resume, keeping the optimizer's saved learning rates; its weight averaging does not run twice (the parent
    averages once per epoch, guarded by the saved ``latest_update_epoch``).

    Not covered: a resume inside the extra epoch the parent adds for models with batch norm, which recomputes the
    batch-norm statistics from the rest of that epoch only.

    Args:
        swa_lrs: ``null`` to keep the model's schedule, or the SWA learning rate (one, or one per parameter group).
        swa_epoch_start: First averaged epoch: an int (1-based), or a fraction of ``max_epochs``.
        annealing_epochs: Epochs of SWALR's annealing to ``swa_lrs`` (with ``swa_lrs`` only).
        annealing_strategy: ``cos`` or ``linear`` (with ``swa_lrs`` only).
        device: Where the averaged copy lives (``null``: the model's device).
    """

    def __init__(self, swa_lrs: PositiveFloat | list[PositiveFloat] | None = None,
                 swa_epoch_start: PositiveInt | float = 0.8, annealing_epochs: PositiveInt = 10,
                 annealing_strategy: Literal["cos", "linear"] = "cos", device: str | None = "cpu") -> None:
        # The parent requires rates; with none given it never uses them (its SWALR is not built here).
        super().__init__(swa_lrs=1.0 if swa_lrs is None else swa_lrs, swa_epoch_start=swa_epoch_start,
                         annealing_epochs=annealing_epochs, annealing_strategy=annealing_strategy, device=device)
        self.keeps_model_schedule = swa_lrs is None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.keeps_model_schedule and trainer.lr_scheduler_configs:
            name = type(trainer.lr_scheduler_configs[0].scheduler).__name__
            raise ScarceError(
                f"StochasticWeightAveraging(swa_lrs={self._swa_lrs}) would replace the model's learning-rate schedule "
                f"({name}) with SWALR from swa_epoch_start {self._swa_epoch_start}: set the callback's swa_lrs to "
                "null to keep the model's schedule and average the weights only, or give the model no schedule "
                "(--model.init_args.lr_scheduler null)")
        super().on_fit_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        averaging = self.swa_start <= trainer.current_epoch <= self.swa_end
        if self.keeps_model_schedule and not self._initialized and averaging:
            # What the parent's first call does, less building SWALR and swapping it in: it then only averages.
            self._initialized = True
            self._average_model = self._average_model.to(self._device or pl_module.device)
            if self.n_averaged is None:
                self.n_averaged = torch.tensor(self._init_n_averaged, dtype=torch.long, device=pl_module.device)
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fit_loop.restarted_mid_epoch and trainer.current_epoch <= self.swa_end:
            # Building SWALR takes an initial step that overwrites the learning rates the optimizer state of the
            # checkpoint holds (those of the epoch in progress); the saved schedule state is loaded, not the rates.
            rates = [[group["lr"] for group in opt.param_groups] for opt in trainer.optimizers]
            self.on_train_epoch_start(trainer, pl_module)
            for opt, lrs in zip(trainer.optimizers, rates):
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr
