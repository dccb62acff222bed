"""What makes the demo's DANN step cheaper on CPU: memory layout, batch size, torch.compile, and how to use 2 cores.

Two measurements, each alternating its variants in one run (median and range over ``--repeats``):

1. CPU time per source image of one DANN digits training step (per-domain passes, SGD, batch B + B, one torch
   thread, so process CPU time is the step's own work whatever else runs on the machine): NCHW vs channels-last,
   batch 64 / 128 / 256, and ``torch.compile`` (``--compile``; its compile time is printed, not counted).
2. How the demo should use the cores: one process with ``--threads`` torch threads vs ``--threads`` processes
   with one thread each, all on the same steps; source images per second of wall time, all processes together.

Inputs are random tensors of the digits' shape (the cost of a step does not depend on the pixel values). Usage:

    .venv/bin/python benchmarks/dann_step_options.py [--steps 60] [--repeats 5] [--compile] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from scarce.bench import median_range
from scarce.nets.adversarial import adversarial_pass
from scarce.nets.dann import dann_digits


def make_step(batch: int, channels_last: bool, compiled: bool = False):
    """One DANN digits training step on fixed random inputs, as ``DANN(batch_norm_stats="per_domain")`` does."""
    torch.manual_seed(0)
    net = dann_digits().train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x_s, x_t = (torch.rand(batch, 3, 28, 28).contiguous(memory_format=fmt) for _ in range(2))
    y_s = torch.randint(0, 10, (batch,))
    forward = torch.compile(net.domain_forward) if compiled else net.domain_forward

    def step() -> None:
        out = adversarial_pass(forward, net.domain_classifier, x_s, x_t, 0.5, per_domain=True)
        loss = F.cross_entropy(out.logits, y_s) + F.cross_entropy(out.domain_logits, out.domain_labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def cpu_images_per_second(step, steps: int, batch: int) -> float:
    """Source images per second of this process's CPU time (one thread: the step's own work)."""
    start = time.process_time()
    for _ in range(steps):
        step()
    return steps * batch / (time.process_time() - start)


def _layout_worker(threads: int, steps: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    step = make_step(64, channels_last=True)
    for _ in range(3):
        step()
    barrier.wait()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    queue.put((start, time.perf_counter()))


def wall_images_per_second(processes: int, threads: int, steps: int) -> float:
    """Source images per wall second of ``processes`` spawned processes, ``threads`` torch threads each."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    workers = [ctx.Process(target=_layout_worker, args=(threads, steps, barrier, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    spans = [queue.get(timeout=900) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"a measuring process exited with status {w.exitcode}")
    return processes * steps * 64 / (max(e for _, e in spans) - min(s for s, _ in spans))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per measurement (batch 64 + 64; fewer for "
                        "larger batches, the same images)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the network's forward")
    parser.add_argument("--threads", type=int, default=2, help="cores to share in the second measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"# dann_step_options  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  {os.cpu_count()} CPUs  "
          f"torch {torch.__version__}  load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    variants = {f"batch {b}, {'channels-last' if cl else 'NCHW'}": (b, cl, False)
                for b, cl in ((64, False), (64, True), (128, False), (128, True), (256, True))}
    if args.compile:
        variants.update({"batch 64, NCHW, torch.compile": (64, False, True),
                         "batch 64, channels-last, torch.compile": (64, True, True)})
    steps = {}
    for name, (batch, cl, compiled) in variants.items():
        start = time.perf_counter()
        steps[name] = make_step(batch, cl, compiled)
        for _ in range(3):  # warm-up (and compilation)
            steps[name]()
        if compiled:
            print(f"# {name}: compile + 3 warm-up steps {time.perf_counter() - start:.1f} s")
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.repeats):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            batch = variants[name][0]
            rates[name].append(cpu_images_per_second(steps[name], max(1, args.steps * 64 // batch), batch))
    base = statistics.median(rates["batch 64, NCHW"])
    print(f"\n1. one DANN step, 1 thread: source images per CPU second, median (range) of {args.repeats}")
    for name in variants:
        print(f"  {name:<40} {median_range(rates[name], '.0f'):>16}   {statistics.median(rates[name]) / base:.2f}x")

    layouts = {f"1 process x {args.threads} threads": (1, args.threads),
               f"{args.threads} processes x 1 thread": (args.threads, 1)}
    walls: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.repeats):
        for name in (list(layouts) if r % 2 == 0 else list(layouts)[::-1]):
            walls[name].append(wall_images_per_second(*layouts[name], args.steps))
    print(f"\n2. channels-last, batch 64 + 64, {args.steps} steps per process: source images per wall second, "
          f"all processes, median (range) of {args.repeats}")
    first = statistics.median(walls[next(iter(layouts))])
    for name in layouts:
        print(f"  {name:<40} {median_range(walls[name], '.0f'):>16}   {statistics.median(walls[name]) / first:.2f}x")
    load = os.getloadavg()
    print(f"\n# load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
