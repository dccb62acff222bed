"""Records -> samples: the feature description, tensor conversion and the project's sample convention.

:class:`FeatureDecoder` turns a decoded ``tf.train.Example`` (name -> list) into a sample dict from a feature
description like ``{"image": "jpeg", "mask": "png", "label": "int"}``; :class:`RecordParser` runs the whole
way from record bytes (parse, decode, transform, :func:`finalize_sample`). Images are decoded by
:mod:`scarce.shards.images`; augmentation lives above, in :mod:`scarce.data.transforms`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors

from scarce._errors import FeatureError, ScarceError
from scarce.shards.example import decode_example, parse_example
from scarce.shards.images import EncodedJpeg, decode_image, decode_mask, is_jpeg

__all__ = [
    "DESCRIPTION_KINDS",
    "FeatureDecoder",
    "RecordParser",
    "finalize_sample",
    "image_tensor",
    "is_mask_feature",
    "mask_tensor",
]

# description value -> the tf.train.Example kind it reads. "png"/"jpeg"/"image" under a key named like a
# mask ("mask", "gt_mask", "mask_png") decode to a Mask, elsewhere to an Image.
DESCRIPTION_KINDS = {
    "jpeg": "bytes", "png": "bytes", "image": "bytes", "mask": "bytes",
    "bytes": "bytes", "str": "bytes", "encoded": "bytes",
    "int": "int64", "int_list": "int64",
    "float": "float", "float_list": "float",
}
_MASK_KEY_HINT = "mask"


def is_mask_feature(key: str, kind: str) -> bool:
    """Whether feature ``key`` described as ``kind`` decodes to a segmentation mask (ids), not an image."""
    return kind == "mask" or (kind in ("jpeg", "png", "image") and _MASK_KEY_HINT in key)


def image_tensor(array: np.ndarray) -> tv_tensors.Image:
    """uint8 ``(H, W, 3)`` array -> uint8 ``tv_tensors.Image`` of shape ``(3, H, W)`` (shares memory)."""
    return tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1))


def mask_tensor(array: np.ndarray) -> tv_tensors.Mask:
    """``(H, W)`` array of ids -> int64 ``tv_tensors.Mask`` of shape ``(H, W)``."""
    return tv_tensors.Mask(torch.from_numpy(array.astype(np.int64)))


class FeatureDecoder:
    """Turn a decoded example (name -> list) into a sample dict, following a feature description.

    Args:
        description: feature name -> one of :data:`DESCRIPTION_KINDS`: ``"jpeg"|"png"|"image"`` (a uint8
            ``tv_tensors.Image``, or a ``Mask`` when the key contains ``"mask"``), ``"mask"``, ``"int"``
            (int64 scalar tensor), ``"int_list"``, ``"float"`` (float32 scalar), ``"float_list"``, ``"bytes"``
            (raw bytes), ``"str"`` (UTF-8 text), ``"encoded"`` (the encoded image as a uint8 1-D tensor, for
            batched decoding on the GPU: see :func:`scarce.data.transforms.decode_jpeg_batch`).
        rename: feature name -> sample key, e.g. ``{"image_png": "image"}``.
        min_size: Passed to :func:`scarce.shards.images.decode_image` for reduced-scale JPEG decoding.
        defer_jpeg: Keep JPEG images (``"jpeg"|"image"`` features not named like a mask) undecoded, as
            :class:`scarce.shards.images.EncodedJpeg`, so that a random crop decodes only its window
            (:class:`scarce.data.transforms.RandomScaleCrop` does); anything left undecoded is decoded whole by
            :func:`finalize_sample`.

    ``kinds`` gives the ``tf.train.Example`` kind each feature must have (for
    :func:`scarce.shards.example.parse_example`).
    """

    def __init__(self, description: Mapping[str, str], rename: Mapping[str, str] | None = None,
                 min_size: Sequence[int] | None = None, defer_jpeg: bool = False) -> None:
        for key, kind in description.items():
            if kind not in DESCRIPTION_KINDS:
                raise ScarceError(f"feature description {key!r}: unknown kind {kind!r}; valid values are "
                                  f"{sorted(DESCRIPTION_KINDS)}")
        self.description = dict(description)
        self.rename = dict(rename or {})
        self.min_size = tuple(min_size) if min_size is not None else None
        self.defer_jpeg = defer_jpeg
        self.kinds = {key: DESCRIPTION_KINDS[kind] for key, kind in self.description.items()}

    def _one(self, key: str, kind: str, values: list) -> Any:
        if kind in ("jpeg", "png", "image", "mask", "int", "float", "bytes", "str", "encoded") and len(values) != 1:
            raise FeatureError(f"feature {key!r} ({kind}): expected exactly 1 value, found {len(values)}; "
                               f"describe it as '{kind}_list' or 'bytes' to keep every value")
        if is_mask_feature(key, kind):
            return mask_tensor(decode_mask(values[0], where=f"feature {key!r}"))
        if self.defer_jpeg and kind in ("jpeg", "image") and is_jpeg(values[0]):
            return EncodedJpeg(values[0], where=f"feature {key!r}")
        if kind in ("jpeg", "png", "image"):
            return image_tensor(decode_image(values[0], where=f"feature {key!r}", min_size=self.min_size))
        if kind == "int":
            return torch.tensor(values[0], dtype=torch.int64)
        if kind == "float":
            return torch.tensor(values[0], dtype=torch.float32)
        if kind == "int_list":
            return torch.tensor(values, dtype=torch.int64)
        if kind == "float_list":
            return torch.tensor(values, dtype=torch.float32)
        if kind == "str":
            return values[0].decode("utf-8")
        if kind == "encoded":
            return torch.frombuffer(bytearray(values[0]), dtype=torch.uint8)
        return values[0]

    def __call__(self, example: Mapping[str, list]) -> dict:
        return {self.rename.get(k, k): self._one(k, kind, example[k]) for k, kind in self.description.items()}


def finalize_sample(sample: dict) -> dict:
    """Bring a decoded/augmented sample to the project convention (idempotent).

    ``image``-like entries (``tv_tensors.Image``) become float32 ``(C, H, W)`` in [0, 1] and plain tensors;
    masks become int64 ``(H, W)`` plain tensors; a still undecoded :class:`~scarce.shards.images.EncodedJpeg` is
    decoded whole.
    """
    out = {}
    for key, value in sample.items():
        if isinstance(value, EncodedJpeg):
            value = image_tensor(value.decode())
        if isinstance(value, tv_tensors.Image):
            value = value.as_subclass(torch.Tensor)
            if not value.is_floating_point():
                value = value.float().div_(255)
        elif isinstance(value, tv_tensors.Mask):
            value = value.as_subclass(torch.Tensor).long()
        out[key] = value
    return out


class RecordParser:
    """raw record bytes -> sample dict: parse the Example, decode features, transform, finalize.

    Args:
        decode: ``None`` (the decoded example dict), a feature description (mapping, see :class:`FeatureDecoder`;
            kinds are checked and only the described features kept) or a callable on the example dict.
        transform: Callable on the decoded sample dict.
        finalize: Convert ``tv_tensors`` to the project's float image / int64 mask convention.
    """

    def __init__(self, decode: Mapping[str, str] | Callable[[dict], Any] | None = None,
                 transform: Callable[[Any], Any] | None = None, finalize: bool = True) -> None:
        if isinstance(decode, Mapping):
            decode = FeatureDecoder(decode)
        self.decode = decode
        self.kinds = decode.kinds if isinstance(decode, FeatureDecoder) else None
        self.transform = transform
        self.finalize = finalize

    def __call__(self, data: bytes, where: str = "") -> Any:
        if self.kinds is not None:
            example = parse_example(data, self.kinds, where=where)
        else:
            example = decode_example(data, where or None)
        sample = self.decode(example) if self.decode is not None else example
        if self.transform is not None:
            sample = self.transform(sample)
        if self.finalize and isinstance(sample, dict):
            sample = finalize_sample(sample)
        return sample
