"""``scarce bench pipeline``: the training input pipeline (book 7.1), timed per stage and end to end.

The pipeline: read records (shards shuffled per epoch), shuffle 1000 raw records, parse the Example (image
and label), draw a random crop of 0.8-1.0 of the size from the JPEG header, decode only that window
(libjpeg-turbo partial decoding, TensorFlow's fast IDCT; at reduced DCT scale when the window still covers
the output), resize (OpenCV bilinear) to ``--size``, random horizontal flip, float in [0, 1] written
straight into a channels-last batch. Two executors:

* ``threads``: one reader in the main thread, ``--workers`` threads decoding whole batches (PIL releases
  the GIL while decoding and resizing, so threads scale without copying batches between processes);
* ``processes``: a ``DataLoader`` with ``--workers`` processes over :class:`StreamingTFRecordDataset`.

``--mode auto`` (default) times a few batches of each and keeps the faster. The command prints the time
per stage (one image at a time, one core), writes a box plot of batch times per epoch, and ends with
``images_per_second: N``.

``--decode device`` times the other path of ``TFRecordDataModule(gpu_decode=True)`` on the same shards: the
``--workers`` processes only read and parse, and each batch of encoded JPEGs is decoded on ``--device`` (nvJPEG
through ``torchvision.io.decode_jpeg`` on CUDA), then cropped, resized and flipped there.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scarce import shards as tfr
from scarce._errors import ScarceError
from scarce._progress import progress
from scarce.data.transforms import BatchCropResize, JpegCropResize, collate_encoded, decode_jpeg_batch
from scarce.shards.images import decode_jpeg_window
from scarce.shards.readers import ShuffleBuffer, StreamingTFRecordDataset

__all__ = ["main", "make_jpeg_shards", "PipelineConfig", "ThreadedJpegPipeline", "process_pipeline", "device_pipeline",
           "profile_stages", "run", "box_plot", "choose_mode"]


def _synthetic_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A street-scene-like picture: smooth gradients, a few coloured blocks and sensor noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3) + rng.uniform(-60, 60, 3) * (y / height)[..., None]
    img = base + 25 * np.sin(x / rng.uniform(8, 40) + rng.uniform(0, 6))[..., None]
    for _ in range(int(rng.integers(4, 10))):
        top, left = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
        h, w = int(rng.integers(8, height // 2)), int(rng.integers(8, width // 3))
        img[top:top + h, left:left + w] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_jpeg_shards(out: str | Path, records: int = 2000, shards: int = 8, size: Sequence[int] = (256, 512),
                     quality: int = 90, seed: int = 0) -> dict:
    """Write ``records`` synthetic JPEGs (``size`` = (h, w), quality 90) with an int64 ``label`` as shards."""
    import io

    rng = np.random.default_rng(seed)

    def gen():
        for i in progress(range(records), desc=f"synthetic JPEG shards in {out}", unit="images"):
            buf = io.BytesIO()
            Image.fromarray(_synthetic_image(rng, int(size[0]), int(size[1]))).save(buf, "JPEG", quality=quality)
            yield {"image": buf.getvalue(), "label": i % 10}

    return tfr.write_shards(gen(), out, prefix="bench", num_shards=shards)


class PipelineConfig:
    """What the bench pipeline does; shared by both executors."""

    def __init__(self, files: Sequence[str], image_key: str = "image", batch_size: int = 32,
                 size: Sequence[int] = (224, 224), workers: int = 2, shuffle_buffer: int = 1000, seed: int = 0,
                 reduced_decode: bool = True, label_key: str | None = "label", window_decode: bool = True) -> None:
        self.files = list(files)
        self.image_key = image_key
        self.label_key = label_key
        self.batch_size = batch_size
        self.size = (int(size[0]), int(size[1]))
        self.workers = max(1, workers)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.crop = JpegCropResize(self.size, reduced_decode=reduced_decode, window_decode=window_decode)
        self.kinds = {image_key: "bytes", **({label_key: "int64"} if label_key else {})}


_INV255 = np.float32(1 / 255)


def _to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in [0, 1] (channels-last memory, as convs like it)."""
    return batch.permute(0, 3, 1, 2).mul(1.0 / 255)  # one pass: uint8 * python float -> float32


class ThreadedJpegPipeline:
    """Batches of decoded, augmented images from a thread pool; records read and shuffled in the caller.

    Yields ``{"image": float (B, 3, H, W)}`` (and ``"label"``: int64 ``(B,)`` with a ``label_key``); keeps
    ``2 * workers`` batches in flight.
    """

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self._local = threading.local()

    def _records(self, epoch: int) -> Iterator[bytes]:
        order = list(range(len(self.cfg.files)))
        random.Random(self.cfg.seed * 1_000_003 + epoch).shuffle(order)
        raw = (data for f in order for data in tfr.iter_raw_records(self.cfg.files[f]))
        return ShuffleBuffer(self.cfg.shuffle_buffer, random.Random(self.cfg.seed + epoch))(raw)

    def _batch(self, datas: list[bytes]) -> dict:
        h, w = self.cfg.size
        # Channels last, float: each image lands with one pass that also scales it to [0, 1].
        out = np.empty((len(datas), h, w, 3), dtype=np.float32)
        labels = np.empty(len(datas), dtype=np.int64)
        image_key, label_key = self.cfg.image_key, self.cfg.label_key
        for i, data in enumerate(datas):
            example = tfr.parse_example(data, self.cfg.kinds)
            np.multiply(self.cfg.crop(example[image_key][0]), _INV255, out=out[i])
            if label_key:
                labels[i] = example[label_key][0]
        batch = {"image": torch.from_numpy(out).permute(0, 3, 1, 2)}
        if label_key:
            batch["label"] = torch.from_numpy(labels)
        return batch

    def epoch(self, epoch: int) -> Iterator[dict]:
        bs = self.cfg.batch_size
        with ThreadPoolExecutor(self.cfg.workers) as pool:
            pending = []
            chunk: list[bytes] = []
            for data in self._records(epoch):
                chunk.append(data)
                if len(chunk) == bs:
                    pending.append(pool.submit(self._batch, chunk))
                    chunk = []
                    if len(pending) >= 2 * self.cfg.workers:
                        yield pending.pop(0).result()
            if chunk:
                pending.append(pool.submit(self._batch, chunk))
            for fut in pending:
                yield fut.result()


class _JpegSample:
    """Picklable decode callable for the DataLoader workers."""

    def __init__(self, key: str, crop: JpegCropResize, label_key: str | None = None) -> None:
        self.key, self.crop, self.label_key = key, crop, label_key

    def __call__(self, example: dict) -> dict:
        sample = {"image": torch.from_numpy(self.crop(example[self.key][0]))}
        if self.label_key:
            sample["label"] = torch.tensor(example[self.label_key][0], dtype=torch.int64)
        return sample


def process_pipeline(cfg: PipelineConfig) -> Callable[[int], Iterator[dict]]:
    """The same pipeline on DataLoader worker processes; returns ``epoch -> iterator of batches``."""
    ds = StreamingTFRecordDataset(cfg.files, decode=_JpegSample(cfg.image_key, cfg.crop, cfg.label_key),
                                  shuffle=True, buffer_size=cfg.shuffle_buffer, seed=cfg.seed)
    ds.counts  # noqa: B018  (count once, before the workers fork)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers,
                                         prefetch_factor=4, persistent_workers=False)

    def epoch(e: int) -> Iterator[dict]:
        ds.set_epoch(e)
        for batch in loader:
            yield dict(batch, image=_to_float(batch["image"]))

    return epoch


def device_pipeline(cfg: PipelineConfig, device: str | torch.device) -> Callable[[int], Iterator[dict]]:
    """Workers read and parse; each batch of JPEGs is decoded and augmented on ``device`` (nvJPEG on CUDA)."""
    device = torch.device(device)
    ds = StreamingTFRecordDataset(cfg.files, decode={cfg.image_key: "encoded"}, shuffle=True,
                                  buffer_size=cfg.shuffle_buffer, seed=cfg.seed, batch_size=cfg.batch_size)
    ds.counts  # noqa: B018  (count once, before the workers fork)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers, prefetch_factor=4,
                                         persistent_workers=False, collate_fn=collate_encoded([cfg.image_key]))
    augment = BatchCropResize(cfg.size, train=True)

    def epoch(e: int) -> Iterator[dict]:
        ds.set_epoch(e)
        for batch in loader:
            yield {"image": augment(decode_jpeg_batch(batch[cfg.image_key], device))}
        if device.type == "cuda":  # the rate counts finished batches, not queued kernels
            torch.cuda.synchronize(device)

    return epoch


def profile_stages(cfg: PipelineConfig, n: int = 200, mask_key: str | None = None) -> dict[str, float]:
    """CPU milliseconds per image of each stage, one image at a time on one core (first ``n`` records).

    CPU time (``time.process_time``), not wall time: on a shared machine it does not follow the other jobs.
    With ``mask_key`` (segmentation records), also the mask's PNG decode with its crop and nearest resize.
    """
    datas, t0 = [], time.process_time()
    for data in tfr.iter_raw_records(cfg.files[0]):
        datas.append(data)
        if len(datas) >= n:
            break
    times = {"read": (time.process_time() - t0) / len(datas)}
    t0 = time.process_time()
    jpegs = [tfr.parse_example(d, {cfg.image_key: "bytes"})[cfg.image_key][0] for d in datas]
    times["parse"] = (time.process_time() - t0) / len(datas)
    import cv2
    import simplejpeg

    images = [simplejpeg.decode_jpeg(j, "RGB", fastdct=cfg.crop.fast_dct) for j in jpegs]  # kept for the next stages
    t0 = time.process_time()  # timed apart: keeping 200 fresh images costs page faults a pipeline does not pay
    for j in jpegs:
        simplejpeg.decode_jpeg(j, "RGB", fastdct=cfg.crop.fast_dct)
    times["decode (full size)"] = (time.process_time() - t0) / len(datas)
    windows = [cfg.crop.window(*img.shape[:2]) for img in images]
    t0 = time.process_time()
    for jpeg, img, window in zip(jpegs, images, windows):
        decode_jpeg_window(jpeg, window, size=img.shape[:2], fast_dct=cfg.crop.fast_dct)
    times["decode (crop window only)"] = (time.process_time() - t0) / len(datas)
    h, w = cfg.size
    crops = []
    t0 = time.process_time()
    for img in images:
        s = random.uniform(0.8, 1.0)
        ch, cw = int(img.shape[0] * s), int(img.shape[1] * s)
        top, left = random.randint(0, img.shape[0] - ch), random.randint(0, img.shape[1] - cw)
        small = cv2.resize(img[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        crops.append(cv2.flip(small, 1) if random.random() < 0.5 else small)
    times["augment (crop+resize+flip)"] = (time.process_time() - t0) / len(datas)
    t0 = time.process_time()
    for i in range(0, len(crops), cfg.batch_size):
        chunk = crops[i:i + cfg.batch_size]
        out = np.empty((len(chunk), h, w, 3), dtype=np.float32)
        for k, c in enumerate(chunk):
            np.multiply(c, _INV255, out=out[k])
        torch.from_numpy(out).permute(0, 3, 1, 2)
    times["collate+float"] = (time.process_time() - t0) / len(datas)
    t0 = time.process_time()
    for j in jpegs:
        cfg.crop(j)
    times["window decode+augment fused (reduced-scale when exact)"] = (time.process_time() - t0) / len(datas)
    if mask_key is not None:
        from scarce.shards.images import decode_mask

        pngs = [tfr.parse_example(d, {mask_key: "bytes"})[mask_key][0] for d in datas]
        t0 = time.process_time()
        for png in pngs:
            mask = decode_mask(png)
            s = random.uniform(0.8, 1.0)
            ch, cw = int(mask.shape[0] * s), int(mask.shape[1] * s)
            cv2.resize(mask[:ch, :cw], (w, h), interpolation=cv2.INTER_NEAREST)
        times["mask: PNG decode + crop + nearest resize"] = (time.process_time() - t0) / len(datas)
    return {k: v * 1e3 for k, v in times.items()}


def run(make_epoch: Callable[[int], Iterator[dict]], epochs: int,
        max_batches: int | None = None, desc: str | None = None) -> tuple[float, list[list[float]], int]:
    """Iterate ``epochs`` epochs; returns (images per second, batch times per epoch, images). With ``desc``, each
    epoch's progress goes to stderr under that name."""
    batch_times: list[list[float]] = []
    images = 0
    start = time.perf_counter()
    for e in range(epochs):
        times: list[float] = []
        t = time.perf_counter()
        batches = make_epoch(e) if desc is None else progress(make_epoch(e), desc=f"{desc} epoch {e}", unit="batches")
        for k, batch in enumerate(batches):
            images += batch["image"].shape[0]
            now = time.perf_counter()
            times.append(now - t)
            t = now
            if max_batches is not None and k + 1 >= max_batches:
                break
        batch_times.append(times)
    return images / (time.perf_counter() - start), batch_times, images


def box_plot(batch_times: list[list[float]], path: str | Path, title: str) -> None:
    """Box plot of batch times per epoch (seconds), like the book's notebook 7.1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot(batch_times)
    ax.set_xticks(range(1, len(batch_times) + 1), [f"epoch {i}" for i in range(len(batch_times))])
    ax.set_ylabel("seconds per batch")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def choose_mode(cfg: PipelineConfig, batches: int = 6) -> tuple[str, dict[str, float]]:
    """Time a few batches with threads and with processes; return the faster mode and both rates."""
    rates = {"threads": run(ThreadedJpegPipeline(cfg).epoch, 1, batches)[0],
             "processes": run(process_pipeline(cfg), 1, batches)[0]}
    return max(rates, key=rates.get), rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scarce bench pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder of TFRecord shards with JPEG images")
    parser.add_argument("--pattern", default="*.tfrecord*", help="glob inside --data (default *.tfrecord*)")
    parser.add_argument("--image-key", default="image")
    parser.add_argument("--mask-key", default=None, help="also time the PNG mask of segmentation records")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--mode", choices=["auto", "threads", "processes"], default="auto")
    parser.add_argument("--no-reduced-decode", action="store_true", help="always decode JPEGs at full size")
    parser.add_argument("--plot", default="pipeline_batch_times.png", help="box plot PNG path")
    parser.add_argument("--decode", choices=["workers", "device"], default="workers",
                        help="workers: simplejpeg + OpenCV on the CPU (default); device: batched decode and "
                        "augmentation on --device, nvJPEG on CUDA (the gpu_decode path)")
    parser.add_argument("--device", default="cuda", help="with --decode device (default cuda)")
    args = parser.parse_args(argv)
    # The pipeline's own threads/processes give the parallelism; torch's OpenMP pool on top of them
    # oversubscribes the cores (a 32-image stack took 0.6 s instead of 10 ms on a loaded 2-core machine).
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    if not Path(args.data).is_dir():
        raise ScarceError(f"--data {args.data!r} is not a folder of TFRecord shards")
    files = tfr.expand_files(os.path.join(args.data, args.pattern))
    cfg = PipelineConfig(files, args.image_key, args.batch_size, args.size, args.workers,
                         reduced_decode=not args.no_reduced_decode)
    print(f"{len(files)} files, batch {args.batch_size}, size {args.size}, {cfg.workers} workers")
    if args.decode == "device":
        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            raise ScarceError("--decode device --device cuda needs CUDA; --device cpu times the same path on the CPU")
        rate, batch_times, images = run(device_pipeline(cfg, args.device), args.epochs)
        print(f"decode on {args.device}: {images} images in {len(batch_times)} epochs")
        print(f"images_per_second: {rate:.1f}")
        return 0
    print("CPU time per image and stage (ms, one core):")
    for stage, ms in profile_stages(cfg, mask_key=args.mask_key).items():
        print(f"  {stage:<38} {ms:7.3f}")
    mode = args.mode
    if mode == "auto":
        mode, rates = choose_mode(cfg)
        print("measured: " + ", ".join(f"{k} {v:.0f} img/s" for k, v in rates.items()) + f" -> {mode}")
    make_epoch = ThreadedJpegPipeline(cfg).epoch if mode == "threads" else process_pipeline(cfg)
    cpu0 = time.process_time()
    rate, batch_times, images = run(make_epoch, args.epochs, desc=f"bench pipeline ({mode})")
    if mode == "threads":  # process mode's workers are other processes
        print(f"cpu_ms_per_image: {(time.process_time() - cpu0) * 1e3 / images:.3f}")
    for e, times in enumerate(batch_times):
        print(f"epoch {e}: {len(times)} batches, median {statistics.median(times) * 1e3:.1f} ms/batch")
    box_plot(batch_times, args.plot, f"scarce pipeline ({mode}, {cfg.workers} workers)")
    print(f"box plot: {args.plot}")
    print(f"images_per_second: {rate:.1f}")
    return 0
