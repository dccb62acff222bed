"""Lightning must not make segmentation slower: fit steps per second of scarce's Segmentation vs a plain PyTorch loop.

Both sides train the embedded realism-gap network as it was when this was measured (``configs/fcn8s_rendered.yaml``
before the second retune: FCN-8s at width_divisor 8 on the vgg16_bn layout, NCHW, 7 classes, 128x128, batch 8, Adam
1e-3 with the poly schedule, cross-entropy ignoring 255; the config now trains width 4, channels_last, Adam 3e-3)
from the same initial weights, on the same cached inputs: ``--scenes`` synthetic-flat scenes rendered once (in a
spawned process) and served by the same DataLoader (shuffled, full batches; no augmentation, so both sides do the
same work per step). The plain loop is what the module does, written out: forward, loss, backward, Adam step,
schedule step. The Lightning side is ``Trainer(max_steps=N).fit(Segmentation(...), loader)`` with the config's
logging interval, no validation, checkpoint or progress bar; the time of the whole ``fit`` counts (trainer set-up
included), against the plain loop's optimizer set-up and steps. The two alternate, the order flipping every
repeat, in one process with ``--threads`` torch threads; reported: median and range of steps per wall second and
per CPU second (the steadier figure on a shared machine), and the ratio per repeat. Usage:

    .venv/bin/python benchmarks/segmentation_lightning_overhead.py [--steps 100] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from scarce.bench import median_range
from scarce.bench.render import render_samples
from scarce.data.datasets.labels import IGNORE_INDEX
from scarce.lightning_modules.segmentation import Segmentation
from scarce.optim import spec
from scarce.schedules import PolyDecay
from scarce.render import CLASS_NAMES, get_preset

SIZE = (128, 128)
LR = 1e-3
MODEL = dict(num_classes=len(CLASS_NAMES), width_divisor=8, batch_norm=True,
             optimizer=spec("torch.optim.Adam", lr=LR), lr_scheduler=spec("scarce.schedules.PolyDecay"))
"""The model part of configs/fcn8s_rendered.yaml when benchmarks/RESULTS.md's figure was measured."""
BATCH_SIZE, LOG_EVERY_N_STEPS = 8, 50


class CachedScenes(Dataset):
    """Rendered scenes held in memory: ``{"image": float (3, H, W) in [0, 1], "mask": int64 (H, W)}``."""

    def __init__(self, samples: list[dict]) -> None:
        self.images = torch.stack([torch.from_numpy(s["rgb"]).permute(2, 0, 1) for s in samples])
        self.masks = torch.stack([torch.from_numpy(s["semantic"]).long() for s in samples])

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index].float() / 255, "mask": self.masks[index]}


def _loader(dataset: Dataset) -> DataLoader:
    return DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(0))


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def plain_loop(dataset: Dataset, steps: int) -> tuple[float, float]:
    """Steps per wall second and per CPU second of the plain PyTorch loop."""
    torch.manual_seed(0)
    net = Segmentation(**MODEL).net.train()  # only its plain nn.Module is used here
    loader = _cycle(_loader(dataset))
    wall, cpu = time.perf_counter(), time.process_time()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = PolyDecay(opt, total_steps=steps)
    weights = torch.ones(MODEL["num_classes"])
    for _ in range(steps):
        batch = next(loader)
        loss = F.cross_entropy(net(batch["image"]), batch["mask"], weight=weights, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def lightning_fit(dataset: Dataset, steps: int) -> tuple[float, float]:
    """Steps per wall second and per CPU second of ``Trainer.fit`` on scarce's Segmentation module."""
    torch.manual_seed(0)
    model = Segmentation(**MODEL)
    loader = _loader(dataset)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=LOG_EVERY_N_STEPS, accelerator="cpu", devices=1)
    trainer.fit(model, train_dataloaders=loader)
    if trainer.global_step != steps:
        raise RuntimeError(f"the Lightning fit ran {trainer.global_step} steps, not {steps}")
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per measurement (batch 8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core's work)")
    parser.add_argument("--scenes", type=int, default=64, help="cached training scenes")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.threads) < 1 or args.scenes < BATCH_SIZE:
        parser.error(f"--steps, --repeats and --threads must be >= 1, --scenes >= {BATCH_SIZE}")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"# segmentation_lightning_overhead  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"{os.cpu_count()} CPUs  torch {torch.__version__}  lightning {L.__version__}  {args.threads} thread(s)  "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:  # GL stays out of this process
        samples = pool.submit(render_samples, "scarce", get_preset("synthetic-flat"), SIZE,
                              range(args.scenes)).result()
    dataset = CachedScenes(samples)
    lightning_fit(dataset, 3)  # warm-up: first-call costs of both sides (oneDNN primitives, imports)
    plain_loop(dataset, 3)
    rows = {"plain": [], "lightning": []}
    for r in range(args.repeats):
        for side in (("plain", "lightning") if r % 2 == 0 else ("lightning", "plain")):
            rows[side].append((plain_loop if side == "plain" else lightning_fit)(dataset, args.steps))
    wall = {side: [w for w, _ in values] for side, values in rows.items()}
    cpu = {side: [c for _, c in values] for side, values in rows.items()}
    ratio_wall = [lw / pw for lw, pw in zip(wall["lightning"], wall["plain"])]
    ratio_cpu = [lc / pc for lc, pc in zip(cpu["lightning"], cpu["plain"])]
    print(f"\nFCN-8s (width_divisor 8, batch norm), {SIZE[0]}x{SIZE[1]}, batch {BATCH_SIZE}, {args.steps} steps per "
          f"fit, {args.repeats} repeats alternating, {args.threads} thread(s): median (range)")
    print(f"{'':<34} {'steps/s (wall)':>20} {'steps per CPU s':>20}")
    rows = [("plain PyTorch loop (anchor)", wall["plain"], cpu["plain"], ".2f"),
            ("scarce Segmentation + Lightning", wall["lightning"], cpu["lightning"], ".2f"),
            ("ratio, per repeat", ratio_wall, ratio_cpu, ".3f")]
    for name, walls, cpus, fmt in rows:
        print(f"{name:<34} {median_range(walls, fmt):>20} {median_range(cpus, fmt):>20}")
    print(f"# per repeat (wall): {', '.join(f'{x:.3f}' for x in ratio_wall)}")
    load = os.getloadavg()
    print(f"# load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
