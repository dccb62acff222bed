"""Offscreen rendering of 3D models into training data (pyrender): colour, depth, exact masks, boxes, poses.

Entry points: :class:`RenderedDataset` (on the fly, one GL context per DataLoader worker),
:class:`SampleRenderer` (one process), ``scarce render`` (TFRecord shards) and ``scarce bench render``;
:mod:`scarce.render.segmentation` has the segmentation datasets (``RenderedSegmentation``,
``RenderedSegmentationShards``). The shard record is declared in :mod:`scarce.shards.schemas`
(``encode_rendered`` / ``decode_rendered`` / ``read_rendered``). Importing this package does not import
pyrender or torch, and creates no GL context (``scarce render``'s spawned workers import it).
"""

from scarce.render.config import (
    CLASS_NAMES,
    NUM_CLASSES,
    RENDER_SIZE,
    Intrinsics,
    ObjectSpec,
    RenderConfig,
    load_config,
)
from scarce.render.presets import PRESETS, get_preset
from scarce.render.sample_renderer import SampleRenderer, resolve_config

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "PRESETS",
    "RENDER_SIZE",
    "Intrinsics",
    "ObjectSpec",
    "RenderConfig",
    "RenderedDataset",
    "SampleRenderer",
    "get_preset",
    "load_config",
    "resolve_config",
]


def __getattr__(name: str):
    # RenderedDataset is a torch Dataset: imported on first use, so that `scarce render` (and its workers) do not
    # import torch.
    if name == "RenderedDataset":
        from scarce.render.dataset import RenderedDataset

        return RenderedDataset
    raise AttributeError(f"module 'scarce.render' has no attribute {name!r}")
