"""``scarce render``: render a synthetic dataset into TFRecord shards, with a preview grid PNG.

Output folder (written crash-safe, all or nothing, by :class:`scarce.shards.writer.ShardFolder`; a folder that
holds a dataset is refused unless ``--overwrite``)::

    OUT/
      {prefix}-00000-of-0000K.tfrecord   (+ .index)   records in index order, record i in shard i % K
      {prefix}.manifest.json                          feature schema and counts (scarce.shards.writer)
      render_config.json                              the resolved config, seed and size
      preview.png                                     the first samples: image over semantic mask

Record schema: ``image`` (PNG RGB), ``depth`` (float32 little-endian raw bytes, HxW, metres, 0 =
background), ``semantic`` (PNG uint8), ``instance`` (PNG uint16), ``boxes`` (floats, xyxy per instance),
``classes`` (int64 per instance), ``poses`` (floats, 16 per instance, object-to-camera, OpenCV axes), ``K``
(9 floats), ``height``, ``width``: :mod:`scarce.shards.schemas` (``encode_rendered``); read back with
:func:`scarce.shards.schemas.decode_rendered` or :class:`scarce.render.RenderedSegmentationShards`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from collections.abc import Mapping

import numpy as np
import yaml

from scarce._errors import ScarceError
from scarce._progress import progress as show_progress
from scarce.packaged_configs import resolve_config_arg
from scarce.render._gl import select_backend
from scarce.render.config import CLASS_NAMES, RENDER_SIZE
from scarce.render.sample_renderer import SampleRenderer, resolve_config
from scarce.render.presets import PRESETS
from scarce.shards.schemas import encode_rendered
from scarce.shards.writer import ShardFolder

__all__ = ["main", "render_splits_to_shards", "render_to_shards"]

_worker_renderer = None
# How often a pool worker checks that the process that started it is still there.
_PARENT_POLL_S = 0.2


def _exit_with_parent(parent: int) -> None:
    """Leave at once (no traceback, no flush) when ``parent`` is gone: a parent killed with SIGKILL cannot
    terminate its pool, and the workers would otherwise render on and die on a broken pipe."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


def _init_worker(config, size, lp_threads, parent=None):
    global _worker_renderer
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if lp_threads:
        os.environ.setdefault("LP_NUM_THREADS", str(lp_threads))  # Mesa reads it when the context is made
    _worker_renderer = SampleRenderer(config, size)


def _render_one(job):
    seed, index, keep_preview = job
    sample = _worker_renderer.render(seed, index)
    preview = (sample["rgb"], sample["semantic"]) if keep_preview else None
    return encode_rendered(sample), preview


def _palette(n: int) -> np.ndarray:
    import colorsys

    cols = [(0, 0, 0)] + [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n - 1, 1), 0.8, 1.0))
                          for i in range(n - 1)]
    return np.array(cols, np.uint8)


def _preview_png(previews, num_classes: int) -> bytes:
    from PIL import Image

    pal = np.full((256, 3), 128, np.uint8)
    pal[:num_classes] = _palette(num_classes)
    tiles = []
    for rgb, sem in previews:
        overlay = (0.5 * rgb + 0.5 * pal[sem]).astype(np.uint8)
        tiles.append(np.concatenate([rgb, overlay], axis=0))
    cols = min(8, len(tiles))
    rows = [np.concatenate(tiles[i : i + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[i : i + cols])), 1)
            for i in range(0, len(tiles), cols)]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, 0)).save(buf, "PNG")
    return buf.getvalue()


def render_to_shards(config, out_dir, num_samples: int, *, seed: int = 0, size=RENDER_SIZE, num_shards: int = 1,
                     workers: int = 1, prefix: str = "data", preview: int = 16, progress: bool = True,
                     overwrite: bool = False) -> dict:
    """Render ``num_samples`` samples into TFRecord shards under ``out_dir``; return the manifest.

    Workers are spawned processes, each with its own GL context (this process creates none when
    ``workers > 1``) and a watch on this one, so they exit when it is killed; records come back in index
    order, so the files do not depend on ``workers``. Shards, manifest, ``render_config.json`` and
    ``preview.png`` are committed together (``overwrite``: replace a dataset already in ``out_dir``).
    """
    return render_splits_to_shards(config, out_dir, {prefix: (seed, num_samples)}, size=size, num_shards=num_shards,
                                   workers=workers, preview=preview, progress=progress, overwrite=overwrite)[prefix]


def render_splits_to_shards(config, out_dir, splits: Mapping[str, tuple[int, int]], *, size=RENDER_SIZE,
                            num_shards: int = 1, workers: int = 1, preview: int = 16, progress: bool = True,
                            overwrite: bool = False) -> dict[str, dict]:
    """Render several splits into one folder in one write: ``splits`` maps a file prefix to ``(seed,
    num_samples)``; returns the manifest of each.

    As :func:`render_to_shards` (which is one split), with one pool of workers for every split; the preview shows
    the first split's first samples. A rendered data source with ``root`` set to the folder reads split ``name``
    from the ``name-*`` shards (:class:`scarce.render.RenderedSegmentationShards`).
    """
    import multiprocessing as mp

    config = resolve_config(config)
    if not splits:
        raise ScarceError("no split to render")
    for name, (_, num_samples) in splits.items():
        if num_samples < 1:
            raise ScarceError(f"--num-samples must be >= 1, got {num_samples}" if len(splits) == 1 else
                              f"split {name!r}: the number of samples must be >= 1, got {num_samples}")
    if workers < 1:
        raise ScarceError(f"--workers must be >= 1, got {workers}")
    previews = []
    manifests = {}

    def records(results, total):
        shown = show_progress(results, desc=f"render {out_dir}", total=total, unit="images") if progress \
            else results
        for record, pre in shown:
            if pre is not None:
                previews.append(pre)
            yield record

    def write_all(folder, render):
        for i, (name, (seed, num_samples)) in enumerate(splits.items()):
            jobs = [(seed, j, i == 0 and j < preview) for j in range(num_samples)]
            manifests[name] = folder.write_shards(records(render(jobs), num_samples), name, num_shards=num_shards)

    with ShardFolder(out_dir, overwrite=overwrite) as folder:
        if workers == 1:
            _init_worker(config, size, None)
            write_all(folder, lambda jobs: map(_render_one, jobs))
        else:
            select_backend()  # probe once; the workers inherit PYOPENGL_PLATFORM
            with mp.get_context("spawn").Pool(workers, _init_worker, (config, size, 1, os.getpid())) as pool:
                write_all(folder, lambda jobs: pool.imap(_render_one, jobs, chunksize=4))
        meta = {"config": config.to_dict(), "size": list(size),
                "splits": {name: {"seed": seed, "num_samples": n} for name, (seed, n) in splits.items()},
                "class_names": [o.name for o in config.objects], "builtin_class_names": list(CLASS_NAMES)}
        if len(splits) == 1:  # the keys of a one-split folder, as before splits
            (seed, num_samples), = splits.values()
            meta.update(seed=seed, num_samples=num_samples)
        folder.write_file("render_config.json", json.dumps(meta, indent=2, default=str).encode())
        if previews:
            folder.write_file("preview.png", _preview_png(previews, max(o.class_id for o in config.objects) + 1))
    return manifests


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce render", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", help=f"built-in preset: {', '.join(PRESETS)}")
    src.add_argument("--config", help="a render YAML file, or a packaged one by name (render/randomized, ...: "
                                      "`scarce configs list`)")
    parser.add_argument("--out", help="output folder, or a URL (s3://bucket/prefix, gs://...; credentials from the "
                        "environment: docs/scaling.md); required unless --print_config")
    parser.add_argument("--num-samples", type=int,
                        help="samples to render (required unless --split or --print_config)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (spawned)")
    parser.add_argument("--seed", type=int, help="scene seed (default 0)")
    parser.add_argument("--size", type=int, nargs=2, default=list(RENDER_SIZE), metavar=("H", "W"))
    parser.add_argument("--prefix", help="shard file name prefix (default data)")
    parser.add_argument("--split", nargs=3, action="append", metavar=("NAME", "SEED", "COUNT"),
                        help="render COUNT scenes of seed SEED as split NAME (repeatable; instead of --prefix, "
                             "--seed, --num-samples). A rendered data source of seed S renders train, val and test "
                             "from S, S + 1, S + 2; with `root:` this folder it reads the splits here instead")
    parser.add_argument("--preview", type=int, default=16, help="samples in preview.png (0: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace the dataset already in --out, whole")
    parser.add_argument("--print_config", action="store_true",
                        help="print the resolved render config as YAML (what --config takes) and exit")
    args = parser.parse_args(argv)
    source = args.preset or resolve_config_arg(args.config)
    if args.print_config:
        print(yaml.safe_dump(resolve_config(source).to_dict(), sort_keys=False), end="")
        return 0
    if args.split and (args.num_samples is not None or args.seed is not None or args.prefix is not None):
        raise ScarceError("--split names each split's seed and count: drop --num-samples, --seed and --prefix")
    if args.out is None or (args.num_samples is None and not args.split):
        parser.error("the following arguments are required: --out, --num-samples (or --split)")
    splits = _parse_splits(args.split) if args.split else {args.prefix or "data": (args.seed or 0, args.num_samples)}
    # Checked before any folder is made or GL context opened: a zero size used to fail deep inside OpenGL.
    if min(args.size) < 1:
        raise ScarceError(f"--size must be two positive integers H W, got {args.size[0]} {args.size[1]}")
    if args.shards < 1:
        raise ScarceError(f"--shards must be >= 1, got {args.shards}")
    if args.preview < 0:
        raise ScarceError(f"--preview must be >= 0 (0: no preview), got {args.preview}")
    manifests = render_splits_to_shards(source, args.out, splits, size=tuple(args.size), num_shards=args.shards,
                                        workers=args.workers, preview=args.preview, overwrite=args.overwrite)
    for name, manifest in manifests.items():
        what = f"split {name}: " if args.split else ""
        print(f"wrote {what}{manifest['num_records']} records in {len(manifest['shards'])} shard(s) to {args.out}")
    return 0


def _parse_splits(specs: list[list[str]]) -> dict[str, tuple[int, int]]:
    """``--split NAME SEED COUNT`` arguments -> ``{NAME: (SEED, COUNT)}``."""
    splits: dict[str, tuple[int, int]] = {}
    for name, seed, count in specs:
        try:
            seed_count = int(seed), int(count)
        except ValueError:
            raise ScarceError(f"--split {name} {seed} {count}: SEED and COUNT must be integers") from None
        if seed_count[1] < 1:
            raise ScarceError(f"--split {name} {seed} {count}: COUNT must be >= 1")
        if name in splits:
            raise ScarceError(f"--split {name} is given twice")
        if not name or name.startswith(".") or "/" in name:
            raise ScarceError(f"--split {name!r}: NAME must be a plain file name prefix (train, val, test)")
        splits[name] = seed_count
    return splits
