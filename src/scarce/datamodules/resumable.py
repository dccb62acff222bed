"""Training loaders that a resumed fit continues exactly where the checkpoint left them, on any world size.

PyTorch's ``shuffle=True`` draws each epoch's order from the global torch RNG when the loader is iterated, so a fit
resumed from a checkpoint sees other batches than the uninterrupted run (one cause of the 0.9424 vs 0.9449 target
accuracy in issue 14), and mid-epoch it starts the epoch over. Here the order of every pass over a training set
is a pure function of ``(seed, epoch, pass within the epoch)`` (:class:`ResumableRandomSampler`), and the
DataModule stores where training stands, ``(epoch, batches done in it, world size, batch size)``, in every
checkpoint (:meth:`ResumableLoaders.state_dict`, which Lightning calls when it writes one). On resume the next
training loaders skip exactly the samples those batches consumed, without loading them.

Under DDP (issue 15) the sampler is the distributed one: rank ``r`` of ``W`` takes every ``W``-th sample of the
pass's one permutation, starting at ``r``, so the samples the first ``k`` batches of all ranks consumed are exactly
the first ``k * batch_size * W`` of that permutation. A resume on another world size (4 processes -> 2) therefore
skips that prefix and deals the rest out over the new ranks: no sample is seen twice in an epoch and none is lost.
The remainder: when ``W`` does not divide the samples left, the last ``len % W`` of the permutation are left out of
that pass (a different few every epoch), like ``DistributedSampler(drop_last=True)``; Lightning's default
``DistributedSampler`` (``drop_last=False``) pads instead by repeating the first samples, which would show some
samples twice per epoch. With ``drop_last`` the loader then drops each rank's last partial batch, as on one process.
Evaluation loaders never drop or repeat a sample (:func:`evaluation_sampler`).

Exact for map-style datasets whose samples draw no random numbers of their own when loaded (blobs, digits, MNIST,
shards, rendered scenes); augmentations that draw from the worker or global RNG (segmentation ``augment: true``)
see the same samples in the same order but other random draws after a mid-epoch resume.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from scarce._errors import ScarceError

__all__ = ["ResumableRandomSampler", "ResumableLoaders", "evaluation_sampler", "training_seed", "world_of"]


def training_seed() -> int:
    """The seed of the training order: the run's ``seed_everything`` (LightningCLI sets ``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def world_of(datamodule: Any) -> tuple[int, int]:
    """``(global rank, world size)`` of the Trainer a DataModule is attached to; ``(0, 1)`` without one."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


def evaluation_sampler(dataset: Dataset, rank: int, world_size: int,
                       split: str = "evaluation") -> DistributedSampler | None:
    """The sampler of an evaluation loader: every sample exactly once over the ranks, or ``None`` on one process.

    Lightning's default for validation and test under DDP is ``DistributedSampler``, which repeats samples to give
    every rank as many: those would count twice in ``val/*`` and ``test/*``. Here rank ``r`` takes samples
    ``r, r + W, ...`` (Lightning's ``UnrepeatedDistributedSampler``, which it uses for prediction): ranks differ by
    at most one sample, and the metrics, summed over ranks, are those of one process. Each rank needs one sample.
    """
    if world_size <= 1:
        return None
    if len(dataset) < world_size:
        raise ScarceError(f"the {split} split has {len(dataset)} samples for {world_size} processes: every process "
                          "needs at least one (use fewer devices, or more samples)")
    return UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)


class ResumableRandomSampler(DistributedSampler):
    """A random permutation per pass, a function of ``(seed, epoch, pass)`` only, dealt out over ``num_replicas``.

    Rank ``rank`` takes ``order[rank::num_replicas]`` of the pass's permutation (after the samples a resumed pass
    skips), leaving out the last ``len % num_replicas`` so every rank gets as many (see the module docstring). On
    one process the order is the permutation itself. A ``DistributedSampler`` subclass, so Lightning uses it as it
    is instead of wrapping it in its own.

    Lightning calls :meth:`set_epoch` before each epoch; within an epoch the ``max_size_cycle`` mode of
    ``CombinedLoader`` may iterate a shorter loader several times, each a new pass. :meth:`resume` makes the next
    pass of ``epoch`` number ``pass_index`` start after its first ``consumed`` samples (over all ranks).

    A resumed later pass (``pass_index > 0``) of such a shorter loader is preceded by one empty pass. In the
    uninterrupted epoch ``max_size_cycle`` had already seen that loader run out once, and it ends the epoch when every
    loader has run out at least once; a resumed iterator starts with no loader counted as run out, so without the
    empty pass it would go on past the longest loader's last batch until this loader's pass ended.

    Args:
        num_samples: Length of the dataset.
        seed: Seed of the order.
        num_replicas: World size.
        rank: This process's global rank.
    """

    def __init__(self, num_samples: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.dataset_size = num_samples
        self._pass, self._consumed, self._reported_done = 0, 0, 0
        self._ran_out_before = False

    def set_epoch(self, epoch: int) -> None:
        # Called again with the same epoch after a mid-epoch resume: that must not restart the epoch's passes.
        if epoch != self.epoch:
            self.epoch, self._pass, self._consumed, self._reported_done = epoch, 0, 0, 0
            self._ran_out_before = False

    def resume(self, epoch: int, pass_index: int, consumed: int, reported_done: int = 0) -> None:
        """Start the next pass at sample ``consumed`` of pass ``pass_index`` of ``epoch``.

        ``reported_done`` is what Lightning already counts as done in this epoch, in samples per rank (batches done
        times this loader's batch size): ``len()`` includes it, so Lightning's count of the epoch's batches covers
        the batches it restored plus the ones left, whatever the world size was when the checkpoint was written.
        """
        self.epoch, self._pass, self._consumed, self._reported_done = epoch, pass_index, consumed, reported_done
        self._ran_out_before = pass_index > 0

    def _per_rank(self, remaining: int) -> int:
        return remaining // self.num_replicas

    def __len__(self) -> int:
        full = self._per_rank(self.dataset_size)
        if self._consumed == 0 and self._reported_done == 0:
            return full
        return max(full, self._reported_done + self._per_rank(self.dataset_size - self._consumed))

    def permutation(self, epoch: int, pass_index: int = 0) -> torch.Tensor:
        """The order of pass ``pass_index`` of ``epoch`` over all ranks, ``(dataset_size,)`` int64."""
        state = np.random.SeedSequence([self.seed, epoch, pass_index]).generate_state(1, np.uint64)[0]
        return torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(int(state)))

    def __iter__(self):
        if self._ran_out_before:
            self._ran_out_before = False
            return iter(())
        order = self.permutation(self.epoch, self._pass)[self._consumed:]
        self._consumed, self._reported_done = 0, 0
        self._pass += 1
        usable = len(order) - len(order) % self.num_replicas
        return iter(order[self.rank:usable:self.num_replicas].tolist())


def _batches_per_rank(num_samples: int, world_size: int, batch_size: int, drop_last: bool) -> int:
    """Batches one rank of ``world_size`` gets from a full pass of :class:`ResumableRandomSampler`."""
    per_rank = num_samples // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


class ResumableLoaders:
    """Mixin of LightningDataModules: shuffled training loaders that resume mid-epoch (see the module docstring).

    ``state_dict`` / ``load_state_dict`` are the LightningDataModule hooks Lightning calls when it writes and reads
    a checkpoint; the position they carry is applied by :meth:`_start_where_saved` to the next training loaders.
    Evaluation loaders see every sample once over the ranks (:func:`evaluation_sampler`).
    """

    _resume_at: dict | None = None

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        # `processed` counts the batches whose training step ran in this epoch, which is what a checkpoint
        # written in on_train_batch_end holds (the batch the fetcher has already prefetched is not counted).
        # The world and batch sizes turn those batches into samples when the resumed run has other ones.
        return {"epoch": trainer.current_epoch, "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
                "world_size": trainer.world_size, "batch_size": self.hparams.batch_size}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_at = dict(state_dict) if state_dict else None
        if self._resume_at is not None:
            # Lightning warns on any mid-epoch resume whose DataLoaders have no state_dict of their own; here the
            # position is the DataModule's and the loaders are built to start there, so the warning would mislead.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool = False,
                split: str = "evaluation") -> DataLoader:
        """A DataLoader of ``dataset`` with the DataModule's ``batch_size``, ``num_workers`` and ``pin_memory``;
        shuffled ones in :class:`ResumableRandomSampler` order, the others in :func:`evaluation_sampler` order."""
        hp = self.hparams
        kwargs = dict(num_workers=hp.num_workers, pin_memory=hp.pin_memory, persistent_workers=hp.num_workers > 0)
        if shuffle:
            return self._shuffled_loader(dataset, hp.batch_size, drop_last, **kwargs)
        sampler = evaluation_sampler(dataset, *world_of(self), split=split)
        return DataLoader(dataset, batch_size=hp.batch_size, drop_last=drop_last, sampler=sampler, **kwargs)

    def _training_loader(self, dataset: Dataset, drop_last: bool = True) -> DataLoader:
        """Shuffled batches of ``dataset`` (full ones only by default), starting where the checkpoint being resumed
        stopped."""
        loader = self._loader(dataset, shuffle=True, drop_last=drop_last)
        self._start_where_saved([loader])
        return loader

    def _shuffled_loader(self, dataset: Dataset, batch_size: int, drop_last: bool, **kwargs) -> DataLoader:
        """A training DataLoader over ``dataset`` in :class:`ResumableRandomSampler` order, dealt over the ranks."""
        rank, world = world_of(self)
        sampler = ResumableRandomSampler(len(dataset), training_seed(), num_replicas=world, rank=rank)
        return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last, sampler=sampler, **kwargs)

    def _start_where_saved(self, loaders: Sequence[DataLoader], longest: bool = True) -> None:
        """Have ``loaders`` (one training epoch: the longest of them, or the shortest if not ``longest``) start at the
        position of the checkpoint being resumed, if any. Each position is used once.

        The position is in the saved run's batches; the samples they consumed are ``batches * batch_size *
        world_size`` of that run (a shorter loader that ``max_size_cycle`` restarted: of its current pass), which
        is what this run skips, whatever its own world and batch sizes.
        """
        if self._resume_at is None:
            return
        state, self._resume_at = self._resume_at, None
        rank, world = world_of(self)
        epoch, batches = state["epoch"], state["batches"]
        # Checkpoints written before the world size was saved come from runs of this world and batch size.
        saved_world, saved_batch = state.get("world_size", world), state.get("batch_size", None)
        samplers = [loader.sampler for loader in loaders]
        if not all(isinstance(s, ResumableRandomSampler) for s in samplers):
            return
        saved_lengths = [_batches_per_rank(s.dataset_size, saved_world, saved_batch or loader.batch_size,
                                           loader.drop_last) for s, loader in zip(samplers, loaders)]
        if batches >= (max(saved_lengths) if longest else min(saved_lengths)):
            return  # written after the epoch's last step: the next epoch starts afresh
        for sampler, loader, length in zip(samplers, loaders, saved_lengths):
            pass_index, done = divmod(batches, max(length, 1))
            # A loader in a later pass is one that max_size_cycle restarts: its length is a full pass, never more
            # than the epoch's, which the longest loader (in pass 0) gives Lightning.
            sampler.resume(epoch, pass_index, done * (saved_batch or loader.batch_size) * saved_world,
                           reported_done=0 if pass_index else batches * loader.batch_size)
