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
from scarce.render.dataset import RenderedDataset, SampleRenderer, resolve_config
from scarce.render.presets import PRESETS, get_preset

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
