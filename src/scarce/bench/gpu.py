"""``make gpu-check``: the GPU acceptance run of issue 15, one call, one table (budget: 8 minutes on one H100 / H200).

Rows, each next to its anchor or target from the same run:

1. the ``gpu``-marked tests (``pytest -m gpu``);
2. ``scarce bench pipeline`` on the same JPEG shards: the CPU decode row (simplejpeg + OpenCV in workers) and the
   nvJPEG row (workers read and parse; ``torchvision.io.decode_jpeg`` on the GPU, crop / resize / flip there);
3. ``scarce bench render --workers 16`` next to plain pyrender drawing the same scenes (target: 2000 frames/s at
   256x256, all outputs);
4. FCN-8s at 256x512, bf16 autocast, channels-last: a plain training loop on synthetic tensors, eager and
   compiled (the model-only ceiling), and MFU;
5. ``scarce fit`` of the same network from the JPEG + PNG-mask shards with ``gpu_decode: true`` (compiled, bf16,
   channels-last): images/s of the steps after the first sixth, all inside the first epoch (the streaming loader
   restarts its workers between epochs), against the compiled model-only row (target: 90 %), and MFU.

A row that fails prints ``FAILED`` and one line of why; the others still run and the exit status is 1. Without
CUDA the CPU rows run and every GPU row says why it is skipped (exit status 0). ``--rehearse-on-cpu`` runs
the GPU rows' code on the CPU at toy sizes (figures meaningless), which is how the tests check this program.
MFU is the model's FLOPs (forward + backward, counted by ``torch.utils.flop_counter``) per second over the GPU's
dense bf16 peak (:data:`DENSE_BF16_FLOPS`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Callback

from scarce.bench.street import make_segmentation_shards

__all__ = ["main", "Row", "ImagesPerSecond", "model_only", "format_table", "DENSE_BF16_FLOPS"]

DENSE_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
"""Dense bf16 tensor-core peaks (NVIDIA datasheets; their 1,979 TFLOPS for H100 SXM / H200 is with 2:4 sparsity),
matched against ``torch.cuda.get_device_name`` in this order."""

FIT_TARGET = 0.90  # the fit's images/s over the compiled model-only loop's
RENDER_TARGET = 2000.0  # frames/s, 256x256, all outputs
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Row:
    """One line of the table: a measured figure next to what it is compared with."""

    what: str
    value: str
    against: str = ""
    verdict: str = ""


def format_table(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows + [Row("what", "figure", "against", "verdict")])
              for f in ("what", "value", "against")]
    lines = [f"{'what':<{widths[0]}}  {'figure':>{widths[1]}}  {'against':<{widths[2]}}  verdict"]
    lines += [f"{r.what:<{widths[0]}}  {r.value:>{widths[1]}}  {r.against:<{widths[2]}}  {r.verdict}" for r in rows]
    return "\n".join(lines)


def peak_flops(device: torch.device) -> float | None:
    """The dense bf16 peak of ``device`` (None when unknown or not CUDA)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for chip, flops in DENSE_BF16_FLOPS.items() if chip.lower() in name.lower()), None)


# ----------------------------------------------------------------------------------------------- rows


def gpu_tests_row() -> Row:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                             str(REPO / "tests")], cwd=REPO, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
    passed = re.search(r"(\d+) passed", summary)
    ok = result.returncode == 0 and passed is not None
    return Row("gpu-marked tests (pytest -m gpu)", passed.group(1) + " passed" if passed else "0 passed", summary,
               "ok" if ok else "FAILED")


def _bench_pipeline(argv: list[str]) -> float:
    """``scarce bench pipeline ARGV`` in this process; its ``images_per_second``."""
    from scarce.bench.pipeline import main as pipeline_main

    out, threads = io.StringIO(), torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out):
            pipeline_main(argv)
    finally:
        torch.set_num_threads(threads)  # the bench pins this process to one thread
    return float(re.search(r"images_per_second: ([\d.]+)", out.getvalue()).group(1))


def pipeline_rows(shards: Path, size: tuple[int, int], batch: int, workers: int, device: str | None) -> list[Row]:
    common = ["--data", str(shards), "--pattern", "train-*", "--size", str(size[0]), str(size[1]), "--batch-size",
              str(batch), "--epochs", "1", "--workers", str(workers), "--plot", os.devnull]
    cpu = _bench_pipeline(common)
    rows = [Row(f"bench pipeline, CPU decode, {workers} workers", f"{cpu:.0f} img/s", "", "")]
    if device is None:
        rows.append(Row("bench pipeline, nvJPEG decode", "skipped", "no CUDA on this machine", "-"))
        return rows
    gpu = _bench_pipeline(common + ["--decode", "device", "--device", device])
    label = "nvJPEG" if device == "cuda" else f"batched decode on {device}"
    rows.append(Row(f"bench pipeline, {label}", f"{gpu:.0f} img/s", f"{gpu / cpu:.1f}x the CPU row", ""))
    return rows


def render_rows(workers: int, frames: int, size: tuple[int, int]) -> list[Row]:
    from scarce.bench.render import measure
    from scarce.render._gl import select_backend
    from scarce.render.sample_renderer import resolve_config

    select_backend()  # probed once here; the spawned workers inherit the choice

    config = resolve_config("synthetic-flat")
    frames -= frames % workers
    result = measure({"plain": ("plain", config), "scarce": ("scarce", config)}, size, workers, frames, repeats=1,
                     chunk=max(workers, frames // 4 - frames // 4 % workers))
    anchor, ours = result["plain"][0], result["scarce"][0]
    ok = ours["fps"] >= RENDER_TARGET
    return [Row(f"bench render, plain pyrender (same scenes), {workers} workers", f"{anchor['fps']:.0f} frames/s",
                "", ""),
            Row(f"bench render, scarce all outputs, {workers} workers", f"{ours['fps']:.0f} frames/s",
                f"target {RENDER_TARGET:.0f} at {size[0]}x{size[1]}; {ours['fps'] / anchor['fps']:.2f}x plain pyrender",
                "ok" if ok else "below target")]


def model_only(device: torch.device, size: tuple[int, int], batch: int, steps: int, compile: bool,
               width_divisor: int = 1, bf16: bool = True) -> dict:
    """FCN-8s training steps (Adam, cross-entropy) on synthetic tensors, channels-last: images/s and FLOPs/image."""
    from torch.utils.flop_counter import FlopCounterMode

    from scarce.nets.fcn8s import FCN8s

    torch.manual_seed(0)
    net = FCN8s(19, width_divisor=width_divisor).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, *size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 19, (batch, *size), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def loss_of(model) -> torch.Tensor:
        with autocast:
            logits = model(x)
        return torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=255)

    with FlopCounterMode(display=False) as counter:
        loss_of(net).backward()
    flops = counter.get_total_flops() / batch
    opt.zero_grad(set_to_none=True)
    model = torch.compile(net) if compile else net

    def step() -> None:
        loss_of(model).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(max(3, steps // 5)):  # warm-up (and compilation)
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    rate = steps * batch / (time.perf_counter() - start)
    return {"images_per_second": rate, "flops_per_image": flops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mfu(rate: float, flops_per_image: float, device: torch.device) -> str:
    peak = peak_flops(device)
    return f"MFU {rate * flops_per_image / peak:.0%}" if peak else "MFU n/a (unknown peak)"


class ImagesPerSecond(Callback):
    """Images/s of the training steps after ``warmup`` (compilation, first fetches), synchronised with the GPU,
    written as JSON to ``path`` when training ends. Given to ``scarce fit`` by class path."""

    def __init__(self, path: str, warmup: int = 50) -> None:
        self.path, self.warmup = path, warmup
        self.images, self.start = 0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()
        elif self.start is not None:
            self.images += len(batch["image"])

    def on_train_end(self, trainer, pl_module) -> None:
        _sync(pl_module.device)
        seconds = time.perf_counter() - self.start if self.start is not None else float("nan")
        Path(self.path).write_text(json.dumps({"images": self.images, "seconds": seconds,
                                               "images_per_second": self.images / seconds}))


def fit_row(shards: Path, out: Path, size: tuple[int, int], batch: int, steps: int, workers: int, device: str,
            compile: bool, width_divisor: int = 1) -> dict:
    """``scarce fit`` of FCN-8s from the JPEG + PNG shards with ``gpu_decode: true``; its images/s."""
    result_path = out / "fit_images_per_second.json"
    warmup = max(1, steps // 6)
    argv = [sys.executable, "-m", "scarce", "fit",
            "--model", "scarce.lightning_modules.segmentation.Segmentation", "--model.num_classes", "19",
            "--model.width_divisor", str(width_divisor), "--model.channels_last", "true",
            "--model.compile", str(compile).lower(),
            "--data", "scarce.datamodules.tfrecord.TFRecordDataModule", "--data.train", str(shards / "train-*"),
            "--data.features", json.dumps({"image": "jpeg", "mask": "png"}),
            "--data.size", json.dumps(list(size)), "--data.gpu_decode", "true", "--data.batch_size", str(batch),
            "--data.num_workers", str(workers), "--data.shuffle_buffer", "256",
            "--trainer.accelerator", "gpu" if device == "cuda" else "cpu", "--trainer.devices", "1",
            "--trainer.precision", "bf16-mixed" if device == "cuda" else "32-true",
            "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(out / "fit"),
            "--trainer.callbacks+=scarce.bench.gpu.ImagesPerSecond",
            f"--trainer.callbacks.path={result_path}", f"--trainer.callbacks.warmup={warmup}"]
    result = subprocess.run(argv, cwd=out, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"scarce fit failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result_path.read_text())


# ----------------------------------------------------------------------------------------------- main


def _failed(what: str, err: BaseException) -> Row:
    """A row whose measurement raised: one line of why, so the other rows and the table still come."""
    first = str(err).strip().splitlines()
    return Row(what, "error", f"{type(err).__name__}: {first[-1] if first else ''}"[:160], "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scarce bench gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=8192, help="JPEG + mask records in the shards (the fit's "
                        "timed steps stay inside one epoch)")
    parser.add_argument("--source-size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"),
                        help="stored image size (half-resolution Cityscapes)")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512], metavar=("H", "W"), help="training size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(16, len(os.sched_getaffinity(0))))
    parser.add_argument("--render-frames", type=int, default=3200)
    parser.add_argument("--render-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--model-steps", type=int, default=60, help="timed steps of the model-only loop")
    parser.add_argument("--fit-steps", type=int, default=300, help="steps of the fit (the first sixth untimed)")
    parser.add_argument("--width-divisor", type=int, default=1, help="FCN-8s channels / this (rehearsals only)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "pipeline", "render", "model", "fit"])
    parser.add_argument("--rehearse-on-cpu", action="store_true", help="run the GPU rows on the CPU (toy sizes: "
                        "the figures mean nothing; for the tests of this program)")
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else ("cpu" if args.rehearse_on_cpu else None)
    size, batch, skip = tuple(args.size), args.batch_size, set(args.skip)
    started = time.perf_counter()
    print(f"# gpu-check {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0) if cuda else 'no CUDA'}, {os.cpu_count()} CPUs, {args.workers} workers")
    if device is None:
        print("# no CUDA here: the GPU rows are skipped (each says so); the CPU rows run")
    no_cuda = "no CUDA on this machine"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        if "tests" not in skip:
            try:
                rows.append(gpu_tests_row() if cuda else
                            Row("gpu-marked tests (pytest -m gpu)", "skipped", no_cuda, "-"))
            except Exception as err:  # noqa: BLE001 - one failed row must not hide the others
                rows.append(_failed("gpu-marked tests (pytest -m gpu)", err))
        shards = out / "shards"
        if "pipeline" not in skip or ("fit" not in skip and device is not None):
            t0 = time.perf_counter()
            make_segmentation_shards(shards, args.records, tuple(args.source_size), args.workers)
            print(f"# {args.records} JPEG + PNG records at {args.source_size[0]}x{args.source_size[1]} written in "
                  f"{time.perf_counter() - t0:.0f} s")
        if "pipeline" not in skip:
            try:
                rows += pipeline_rows(shards, size, batch, args.workers, device)
            except Exception as err:  # noqa: BLE001
                rows.append(_failed("bench pipeline", err))
        if "render" not in skip:
            try:
                rows += render_rows(args.workers, args.render_frames, tuple(args.render_size))
            except Exception as err:  # noqa: BLE001
                rows.append(_failed("bench render", err))
        model = None
        model_name = f"FCN-8s {size[0]}x{size[1]} model-only (synthetic, bf16, channels-last)"
        if "model" not in skip:
            if device is None:
                rows.append(Row(model_name, "skipped", no_cuda, "-"))
            for compiled in ((False, True) if cuda else (False,)) if device is not None else ():
                name = f"FCN-8s {size[0]}x{size[1]} model-only, {'compiled' if compiled else 'eager'}"
                try:
                    res = model_only(torch.device(device), size, batch, args.model_steps, compiled, args.width_divisor,
                                     bf16=cuda)
                except Exception as err:  # noqa: BLE001
                    rows.append(_failed(name, err))
                    continue
                rows.append(Row(name, f"{res['images_per_second']:.0f} img/s",
                                _mfu(res["images_per_second"], res["flops_per_image"], torch.device(device)), ""))
                model = res
        fit_name = "scarce fit, JPEG shards, gpu_decode, bf16, channels-last"
        if "fit" not in skip:
            if device is None:
                rows.append(Row(fit_name, "skipped", no_cuda, "-"))
            else:
                try:
                    fit = fit_row(shards, out, size, batch, args.fit_steps, args.workers, device, compile=cuda,
                                  width_divisor=args.width_divisor)
                except Exception as err:  # noqa: BLE001
                    rows.append(_failed(fit_name, err))
                else:
                    rate, against, verdict = fit["images_per_second"], "", ""
                    if model is not None:
                        ratio = rate / model["images_per_second"]
                        mfu = _mfu(rate, model["flops_per_image"], torch.device(device))
                        against = f"{ratio:.0%} of model-only; {mfu}"
                        verdict = "ok" if ratio >= FIT_TARGET else f"below {FIT_TARGET:.0%}"
                    rows.append(Row(fit_name, f"{rate:.0f} img/s", against, verdict))
    print(format_table(rows))
    print(f"# {time.perf_counter() - started:.0f} s in all")
    return 1 if any(r.verdict == "FAILED" for r in rows) else 0
