"""Synthetic street-like segmentation records (a JPEG picture and its PNG class mask) as TFRecord shards.

For the GPU acceptance run (:mod:`scarce.bench.gpu`) and the capacity sheet of docs/scaling.md: what a converted
Cityscapes-like dataset costs to read, decode and augment, without the dataset. Light on imports (numpy, PIL,
OpenCV), so the spawned processes that encode the records start fast.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from pathlib import Path

import numpy as np

__all__ = ["street_record", "make_segmentation_shards"]

SKY, BUILDING, ROAD, OBJECTS = 10, 2, 0, (11, 13, 5)  # Cityscapes train ids: sky, building, road; person, car, pole


def street_record(seed: int, height: int, width: int) -> dict[str, bytes]:
    """``{"image": JPEG (quality 90), "mask": PNG}`` of one ``height`` x ``width`` scene drawn from ``seed``."""
    from PIL import Image

    from scarce.shards.images import encode_png

    rng = np.random.default_rng(seed)
    mask = np.full((height, width), BUILDING, np.uint8)
    mask[: height // 3] = SKY
    mask[2 * height // 3:] = ROAD
    for _ in range(int(rng.integers(3, 8))):
        top, left = int(rng.integers(height // 3, height - 8)), int(rng.integers(0, width - 8))
        h, w = int(rng.integers(8, max(9, height // 3))), int(rng.integers(8, max(9, width // 4)))
        mask[top:top + h, left:left + w] = rng.choice(OBJECTS)
    palette = rng.uniform(30, 225, (256, 3)).astype(np.float32)
    image = palette[mask] + rng.normal(0, 8, (height, width, 3)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return {"image": buf.getvalue(), "mask": encode_png(mask, compression=1)}


def _record(args: tuple[int, int, int]) -> dict[str, bytes]:
    return street_record(*args)


def make_segmentation_shards(out: str | Path, records: int, size: tuple[int, int], workers: int = 1,
                             shards: int = 8) -> dict:
    """Write ``records`` street records at ``size`` = (H, W) as ``out/train-*.tfrecord`` (encoded in ``workers``
    spawned processes); returns the manifest."""
    from scarce.shards.writer import write_shards

    jobs = [(seed, int(size[0]), int(size[1])) for seed in range(records)]
    if workers <= 1:
        return write_shards(map(_record, jobs), out, prefix="train", num_shards=shards)
    with mp.get_context("spawn").Pool(workers) as pool:
        return write_shards(pool.imap(_record, jobs, chunksize=16), out, prefix="train", num_shards=shards)
