"""Training loaders that a resumed fit continues exactly where the checkpoint left them.

PyTorch's ``shuffle=True`` draws each epoch's order from the global torch RNG when the loader is iterated, so a fit
resumed from a checkpoint sees other batches than the uninterrupted run (one cause of the 0.9424 vs 0.9449 target
accuracy in issue 14), and mid-epoch it starts the epoch over. Here the order of every pass over a training set
is a pure function of ``(seed, epoch, pass within the epoch)`` (:class:`ResumableRandomSampler`), and the
DataModule stores where training stands, ``(epoch, batches done in it)``, in every checkpoint
(:meth:`ResumableLoaders.state_dict`, which Lightning calls when it writes one). On resume the next training
loaders skip exactly those batches, without loading them.

Exact for map-style datasets whose samples draw no random numbers of their own when loaded (blobs, digits, MNIST);
augmentations that draw from the worker or global RNG (segmentation ``augment: true``) see the same samples in the
same order but other random draws after a mid-epoch resume. Under DDP Lightning wraps the sampler in a
``DistributedSamplerWrapper``: the skip then counts every rank's batches, so the same number of samples is
skipped in total, but which rank gets which of the remaining samples may differ from the uninterrupted run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["ResumableRandomSampler", "ResumableLoaders", "training_seed"]


def training_seed() -> int:
    """The seed of the training order: the run's ``seed_everything`` (LightningCLI sets ``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableRandomSampler(Sampler[int]):
    """A random permutation per pass whose order depends only on ``(seed, epoch, pass)``, never on the global RNG.

    Lightning calls :meth:`set_epoch` before each epoch (as for ``DistributedSampler``); within an epoch the
    ``max_size_cycle`` mode of ``CombinedLoader`` may iterate a shorter loader several times, each a new pass.
    :meth:`resume` makes the next pass start ``skip`` samples into pass ``pass_index`` of ``epoch``.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples, self.seed = num_samples, seed
        self.epoch, self._pass, self._skip = 0, 0, 0

    def set_epoch(self, epoch: int) -> None:
        # Called again with the same epoch after a mid-epoch resume: that must not restart the epoch's passes.
        if epoch != self.epoch:
            self.epoch, self._pass, self._skip = epoch, 0, 0

    def resume(self, epoch: int, pass_index: int, skip: int) -> None:
        self.epoch, self._pass, self._skip = epoch, pass_index, skip

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        state = np.random.SeedSequence([self.seed, self.epoch, self._pass]).generate_state(1, np.uint64)[0]
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(int(state)))
        order, self._skip = order[self._skip:], 0
        self._pass += 1
        return iter(order.tolist())


class ResumableLoaders:
    """Mixin of LightningDataModules: shuffled training loaders that resume mid-epoch (see the module docstring).

    ``state_dict`` / ``load_state_dict`` are the LightningDataModule hooks Lightning calls when it writes and reads
    a checkpoint; the position they carry is applied by :meth:`_start_where_saved` to the next training loaders.
    """

    _resume_at: tuple[int, int] | None = None

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        # `processed` counts the batches whose training step ran in this epoch, which is what a checkpoint
        # written in on_train_batch_end holds (the batch the fetcher has already prefetched is not counted).
        return {"epoch": trainer.current_epoch, "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_at = (state_dict["epoch"], state_dict["batches"]) if state_dict else None
        if self._resume_at is not None:
            # Lightning warns on any mid-epoch resume whose DataLoaders have no state_dict of their own; here the
            # position is the DataModule's and the loaders are built to start there, so the warning would mislead.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """A DataLoader of ``dataset`` with the DataModule's ``batch_size``, ``num_workers`` and ``pin_memory``;
        shuffled ones in :class:`ResumableRandomSampler` order."""
        hp = self.hparams
        kwargs = dict(num_workers=hp.num_workers, pin_memory=hp.pin_memory, persistent_workers=hp.num_workers > 0)
        if shuffle:
            return self._shuffled_loader(dataset, hp.batch_size, drop_last, **kwargs)
        return DataLoader(dataset, batch_size=hp.batch_size, drop_last=drop_last, **kwargs)

    def _training_loader(self, dataset: Dataset, drop_last: bool = True) -> DataLoader:
        """Shuffled batches of ``dataset`` (full ones only by default), starting where the checkpoint being resumed
        stopped."""
        loader = self._loader(dataset, shuffle=True, drop_last=drop_last)
        self._start_where_saved([loader])
        return loader

    def _shuffled_loader(self, dataset: Dataset, batch_size: int, drop_last: bool, **kwargs) -> DataLoader:
        """A training DataLoader over ``dataset`` in :class:`ResumableRandomSampler` order."""
        return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last,
                          sampler=ResumableRandomSampler(len(dataset), training_seed()), **kwargs)

    def _start_where_saved(self, loaders: Sequence[DataLoader], longest: bool = True) -> None:
        """Have ``loaders`` (one training epoch: the longest of them, or the shortest if not ``longest``) start at the
        position of the checkpoint being resumed, if any. Each position is used once."""
        if self._resume_at is None:
            return
        epoch, batches = self._resume_at
        self._resume_at = None
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        lengths = [len(loader) for loader in loaders]
        if batches >= (max(lengths) if longest else min(lengths)):
            epoch, batches = epoch + 1, 0  # written after the epoch's last step: the next epoch starts afresh
        for loader, length in zip(loaders, lengths):
            sampler = loader.sampler
            if isinstance(sampler, ResumableRandomSampler):
                pass_index, done = divmod(batches, max(length, 1))
                sampler.resume(epoch, pass_index, done * loader.batch_size * world)

