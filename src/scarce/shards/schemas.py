"""The record schemas of scarce's shards, each declared once with its encoder and its decoder.

* **segmentation** (``scarce data convert cityscapes|synthia``): ``image`` (PNG bytes, RGB, 8-bit, the source
  file's), ``mask`` (PNG bytes, one channel, 8-bit Cityscapes train ids, 255 = ignore), ``name`` (the source
  file's stem), ``height``, ``width``. TensorFlow reads both images with ``tf.io.decode_png``.
* **rendered** (``scarce render``): ``image`` (PNG RGB), ``depth`` (float32 little-endian raw bytes, HxW,
  metres, 0 = background), ``semantic`` (PNG uint8 class ids), ``instance`` (PNG uint16 instance ids),
  ``boxes`` (floats, xyxy per instance, x1 / y1 exclusive), ``classes`` (int64 per instance), ``poses`` (floats,
  16 per instance, object-to-camera, OpenCV axes), ``K`` (9 floats), ``height``, ``width``.
* **image-folder** (``scarce data convert imagefolder|mnist``): ``image`` (the encoded image bytes) and
  ``label`` (int64 class index).

Encoders return record dicts for :func:`scarce.shards.writer.write_shards`; decoders turn records back into
the project's sample dicts (``image`` float ``(3, H, W)`` in [0, 1], ``mask`` int64 ``(H, W)``, ...).

Importing this module does not import torch (the sample builders do, when first called): ``scarce render``'s
worker processes only encode, and should not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scarce._errors import ScarceError
from scarce.shards.example import parse_example, read_records
from scarce.shards.images import decode_image, decode_mask, encode_png

__all__ = [
    "IMAGEFOLDER_DESCRIPTION",
    "IMAGEFOLDER_FEATURES",
    "RENDERED_FEATURES",
    "RENDERED_LAYOUT",
    "SEGMENTATION_FEATURES",
    "SEGMENTATION_LAYOUT",
    "decode_imagefolder",
    "decode_rendered",
    "decode_rendered_arrays",
    "decode_segmentation",
    "decode_segmentation_mask",
    "encode_imagefolder",
    "encode_rendered",
    "encode_segmentation",
    "read_rendered",
    "rendered_sample",
    "segmentation_sample",
]


# --------------------------------------------------------------------------------------------- segmentation

SEGMENTATION_FEATURES = {"image": "bytes", "mask": "bytes", "name": "bytes", "height": "int64", "width": "int64"}

SEGMENTATION_LAYOUT = """\
root/
    {split}-00000-of-0000N.tfrecord[.index]   (records: image PNG, mask PNG of train ids, name, height, width)
    {split}.manifest.json
made by `scarce data convert cityscapes|synthia --root DIR --out root`"""


def segmentation_sample(image: np.ndarray, mask: np.ndarray, name: str) -> dict[str, Any]:
    """uint8 ``(H, W, 3)`` image and ``(H, W)`` train ids -> the sample dict (``image`` float ``(3, H, W)`` in
    [0, 1], ``mask`` int64 ``(H, W)``, ``name``)."""
    import torch

    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return {"image": image_t, "mask": torch.from_numpy(np.ascontiguousarray(mask)).long(), "name": name}


def encode_segmentation(image_png: bytes, mask: np.ndarray, name: str) -> dict[str, Any]:
    """A segmentation record (``image_png``: the source file's bytes; ``mask``: uint8 train ids ``(H, W)``)."""
    return {"image": image_png, "mask": encode_png(mask.astype(np.uint8)), "name": name,
            "height": int(mask.shape[0]), "width": int(mask.shape[1])}


def decode_segmentation(data: bytes, *, where: str, default_name: str = "") -> dict[str, Any]:
    """A serialized segmentation record -> the sample dict (see :func:`segmentation_sample`).

    Args:
        data: The ``tf.train.Example`` bytes.
        where: The file, for error messages (which also name the record and the feature).
        default_name: ``name`` of a record that has none.
    """
    rec = parse_example(data, SEGMENTATION_FEATURES, where=where)
    name = rec["name"][0].decode() if rec["name"] else default_name
    image = decode_image(rec["image"][0], where=f"{where}: record {name!r} image")
    mask = decode_mask(rec["mask"][0], where=f"{where}: record {name!r} mask")
    return segmentation_sample(image, mask, name)


def decode_segmentation_mask(data: bytes, *, where: str) -> np.ndarray:
    """Only the train-id mask ``(H, W)`` of a serialized segmentation record (for class statistics)."""
    rec = parse_example(data, {"mask": "bytes"}, where=where)
    return decode_mask(rec["mask"][0], where=f"{where}: mask")


# --------------------------------------------------------------------------------------------- rendered

RENDERED_FEATURES = {"image": "bytes", "depth": "bytes", "semantic": "bytes", "instance": "bytes", "boxes": "float",
                     "classes": "int64", "poses": "float", "K": "float", "height": "int64", "width": "int64"}

RENDERED_LAYOUT = """\
root/
    {split}-00000-of-0000N.tfrecord[.index]   (rendered records: image, semantic, instance, depth, ...)
made by `scarce render --out root` (uncompressed shards, so they can be read by index)"""

# PNG zlib level of rendered images: the fastest (rendering writes many; part of the byte-exact output).
_RENDERED_PNG_LEVEL = 1


def encode_rendered(sample: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Render outputs (numpy, as ``SampleRenderer.render`` returns them: ``rgb``, ``depth``, ``semantic``,
    ``instance``, ``boxes``, ``classes``, ``poses``, ``K``) -> a rendered record."""
    h, w = sample["semantic"].shape
    return {
        "image": encode_png(sample["rgb"], compression=_RENDERED_PNG_LEVEL),
        "depth": np.ascontiguousarray(sample["depth"], dtype="<f4").tobytes(),
        "semantic": encode_png(sample["semantic"].astype(np.uint8), compression=_RENDERED_PNG_LEVEL),
        "instance": encode_png(sample["instance"].astype(np.uint16), compression=_RENDERED_PNG_LEVEL),
        "boxes": [float(v) for v in np.asarray(sample["boxes"]).ravel()],
        "classes": [int(v) for v in np.asarray(sample["classes"]).ravel()],
        "poses": [float(v) for v in np.asarray(sample["poses"]).ravel()],
        "K": [float(v) for v in np.asarray(sample["K"]).ravel()],
        "height": int(h),
        "width": int(w),
    }


def _one(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def decode_rendered_arrays(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A rendered record as :func:`scarce.shards.example.read_records` yields it -> the numpy render outputs."""
    missing = [k for k in RENDERED_FEATURES if k not in record]
    if missing:
        raise ScarceError(f"not a rendered record: features {missing} missing (have {sorted(record)})")
    h, w = int(_one(record["height"])), int(_one(record["width"]))
    depth = np.frombuffer(_one(record["depth"]), dtype="<f4")
    if depth.size != h * w:
        raise ScarceError(f"rendered record: depth holds {depth.size} values, expected height*width = {h * w}")
    return {
        "rgb": decode_image(_one(record["image"]), where="rendered record: feature 'image'"),
        "depth": depth.reshape(h, w).astype(np.float32),
        "semantic": decode_mask(_one(record["semantic"]), where="rendered record: feature 'semantic'").astype(
            np.uint8, copy=False),
        "instance": decode_mask(_one(record["instance"]), where="rendered record: feature 'instance'").astype(
            np.uint16, copy=False),
        "boxes": np.asarray(record["boxes"], np.float32).reshape(-1, 4),
        "classes": np.asarray(record["classes"], np.int64),
        "poses": np.asarray(record["poses"], np.float32).reshape(-1, 4, 4),
        "K": np.asarray(record["K"], np.float32).reshape(3, 3),
    }


def _pad(a: np.ndarray, n: int | None) -> np.ndarray:
    if n is None or len(a) == n:
        return a
    if len(a) > n:
        raise ScarceError(f"a sample has {len(a)} instances, more than pad_to={n}")
    out = np.zeros((n, *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    return out


def rendered_sample(arrays: Mapping[str, np.ndarray], index: int | None = None,
                    pad_to: int | None = None) -> dict[str, Any]:
    """numpy render outputs -> the training sample dict.

    ``image`` float ``(3, H, W)`` in [0, 1], ``mask`` int64 ``(H, W)`` (semantic ids), ``depth`` float ``(H, W)``,
    ``instance`` int64 ``(H, W)``, ``boxes`` float ``(N, 4)``, ``classes`` int64 ``(N,)``, ``poses`` float
    ``(N, 4, 4)``, ``K`` float ``(3, 3)``, ``num_instances`` int64, and ``index`` int64 when given.

    Args:
        arrays: outputs of ``SampleRenderer.render`` or :func:`decode_rendered_arrays`.
        index: sample index, stored as ``index`` when given.
        pad_to: pad ``boxes``, ``classes``, ``poses`` with zeros (class 0 = none) to this many instances, so
            the default DataLoader collate can stack them; ``num_instances`` holds the real count.
    """
    import torch

    n = len(arrays["classes"])
    sample = dict(arrays)
    for key, shape in (("boxes", (-1, 4)), ("classes", (-1,)), ("poses", (-1, 4, 4))):
        sample[key] = _pad(np.asarray(sample[key]).reshape(shape), pad_to)

    out = {
        "image": torch.from_numpy(np.ascontiguousarray(sample["rgb"].transpose(2, 0, 1))).float().div_(255.0),
        "mask": torch.from_numpy(sample["semantic"].astype(np.int64)),
        "depth": torch.from_numpy(np.ascontiguousarray(sample["depth"])),
        "instance": torch.from_numpy(sample["instance"].astype(np.int64)),
        "boxes": torch.from_numpy(np.asarray(sample["boxes"], np.float32).reshape(-1, 4)),
        "classes": torch.from_numpy(np.asarray(sample["classes"], np.int64)),
        "poses": torch.from_numpy(np.asarray(sample["poses"], np.float32).reshape(-1, 4, 4)),
        "K": torch.from_numpy(np.asarray(sample["K"], np.float32).reshape(3, 3)),
    }
    out["num_instances"] = torch.tensor(n, dtype=torch.int64)
    if index is not None:
        out["index"] = torch.tensor(index, dtype=torch.int64)
    return out


def decode_rendered(record: Mapping[str, Any], pad_to: int | None = None) -> dict[str, Any]:
    """A rendered record -> the training sample dict ``RenderedDataset`` gives (without ``index``; pass
    ``pad_to`` = the config's maximum objects per scene to pad like it does)."""
    return rendered_sample(decode_rendered_arrays(record), pad_to=pad_to)


def read_rendered(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the training sample dicts of one rendered shard file."""
    for record in read_records(path):
        yield decode_rendered(record)


# --------------------------------------------------------------------------------------------- image folder

IMAGEFOLDER_FEATURES = {"image": "bytes", "label": "int64"}
# The feature description (see FeatureDecoder) that reads it: a uint8 image tensor and an int64 label.
IMAGEFOLDER_DESCRIPTION = {"image": "image", "label": "int"}


def encode_imagefolder(image: bytes, label: int) -> dict[str, Any]:
    """An image-folder record: the encoded image bytes (a file's, unchanged) and its class index."""
    return {"image": image, "label": int(label)}


def decode_imagefolder(example: Mapping[str, list]) -> dict[str, Any]:
    """A decoded image-folder example -> ``{"image": uint8 tv_tensors.Image (3, H, W), "label": int64}``."""
    from scarce.shards.decode import FeatureDecoder  # torch and torchvision, on first use only

    return FeatureDecoder(IMAGEFOLDER_DESCRIPTION)(example)
