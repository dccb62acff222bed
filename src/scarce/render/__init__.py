"""Offscreen rendering of 3D models into training data (pyrender): colour, depth, exact masks, boxes, poses.

Entry points: :class:`RenderedDataset` (on the fly, one GL context per DataLoader worker),
:class:`SampleRenderer` (one process), ``scarce render`` (TFRecord shards) and ``scarce bench render``.
Importing this package does not import pyrender or create a GL context.
"""

from scarce.render.config import Intrinsics, ObjectSpec, RenderConfig, load_config
from scarce.render.dataset import (
    RenderedDataset,
    SampleRenderer,
    decode_record,
    encode_record,
    read_rendered,
    resolve_config,
    to_training_sample,
)
from scarce.render.presets import CLASS_NAMES, NUM_CLASSES, PRESETS, get_preset

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "PRESETS",
    "Intrinsics",
    "ObjectSpec",
    "RenderConfig",
    "RenderedDataset",
    "SampleRenderer",
    "decode_record",
    "encode_record",
    "get_preset",
    "load_config",
    "read_rendered",
    "resolve_config",
    "to_training_sample",
]
