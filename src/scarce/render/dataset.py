"""Rendered scenes as a map-style torch dataset: :class:`RenderedDataset`.

Sample ``i`` is rendered on demand by :class:`~scarce.render.sample_renderer.SampleRenderer` (which has the numpy
sample's keys) and turned into the training sample dict by :func:`scarce.shards.schemas.rendered_sample`:
``image`` float ``(3, H, W)`` in [0, 1], ``mask`` int64 ``(H, W)`` (semantic ids), ``depth`` float ``(H, W)``,
``instance`` int64 ``(H, W)``, ``boxes`` float ``(N, 4)``, ``classes`` int64 ``(N,)``, ``poses`` float
``(N, 4, 4)``, ``K`` float ``(3, 3)``, ``num_instances`` int64, ``index`` int64, the per-instance fields padded to
the config's maximum objects per scene (zeros; class 0 = no instance) so that the default DataLoader collate works.

This module imports torch (a ``Dataset``); ``scarce render`` and its workers use
:mod:`scarce.render.sample_renderer`, which does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from scarce._errors import ScarceError
from scarce.render.config import RENDER_SIZE, RenderConfig
from scarce.render.sample_renderer import SampleRenderer, boxes_from_instances, resolve_config
from scarce.shards.samples import SampleDataset
from scarce.shards.schemas import rendered_sample

__all__ = ["RenderedDataset", "SampleRenderer", "boxes_from_instances", "resolve_config"]


class RenderedDataset(SampleDataset):
    """Map-style dataset (a ``torch.utils.data.Dataset``): sample ``i`` is rendered on demand, a pure function of
    ``(config, seed, i)``.

    Each process renders with its own GL context, created lazily on its first ``__getitem__``: the parent of
    forked DataLoader workers must not render before they start (a fork of a process holding an EGL context
    hangs in the child; this raises a clear error instead), or use ``multiprocessing_context="spawn"``.

    Args:
        config_or_preset: a :class:`RenderConfig`, a preset name or a ``configs/render/*.yaml`` path.
        num_samples: dataset length.
        seed: dataset seed.
        size: ``(H, W)`` of the images.
        transform: callable on each image.
        target_transform: callable on each mask (the semantic ids).
        transforms: callable on each training sample dict (instead of the two above).
    """

    target_key = "mask"

    def __init__(
        self,
        config_or_preset: RenderConfig | str = "synthetic-flat",
        num_samples: int = 1000,
        seed: int = 0,
        size: tuple[int, int] = RENDER_SIZE,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        transforms: Callable[[dict], dict] | None = None,
    ):
        super().__init__(None, None, transforms, transform, target_transform)
        if int(num_samples) < 1:
            raise ScarceError(f"num_samples must be >= 1, got {num_samples}")
        self.config = resolve_config(config_or_preset)
        self.num_samples, self.seed = int(num_samples), int(seed)
        self.size = (int(size[0]), int(size[1]))
        self._renderer: SampleRenderer | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.num_samples

    def _get_renderer(self) -> SampleRenderer:
        if self._renderer is None or self._pid != os.getpid():
            # A renderer inherited through fork points at the parent's context: never touch it.
            self._renderer, self._pid = SampleRenderer(self.config, self.size), os.getpid()
        return self._renderer

    def render(self, index: int) -> dict[str, np.ndarray]:
        """The raw numpy outputs of sample ``index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a RenderedDataset of {self.num_samples} samples")
        return self._get_renderer().render(self.seed, index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = rendered_sample(self.render(int(index)), int(index), pad_to=self.config.num_objects[1])
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        objects = ", ".join(o.name for o in self.config.objects)
        return f"Seed: {self.seed}\nSize: {self.size}\nObjects: {objects}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_renderer"], state["_pid"] = None, None  # spawn / pickling: the GL context stays behind
        return state
