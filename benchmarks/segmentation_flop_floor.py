"""How far a CPU core can take one FCN-8s fit: the floating-point work of a training step against the rate at which
this core multiplies matrices (anchor), and the step as it runs.

The step is what `Segmentation` does per batch of `configs/fcn8s_rendered.yaml` (FCN-8s on the vgg16_bn layout,
channels_last, 128x128, batch 8, pixel-wise cross-entropy, backward, for-loop Adam 3e-3; `whole_step` of
`segmentation_step_parts.py`), in a process with the malloc settings `scarce fit` applies. Its work is counted by
`torch.utils.flop_counter.FlopCounterMode` over the forward and backward pass: the convolutions (fc6 as
`SameConv2d` computes it, only the products that meet the map), split into the backbone, fc6 + fc7 and the heads
(score layers and upsampling). The elementwise work (batch norm, ReLU, the loss, Adam) is not counted: it is
bounded by memory traffic, not by arithmetic, so the floor below is optimistic.

The anchor is the fastest arithmetic this core sustains: single-precision matrix products (`torch.mm`, MKL /
oneDNN) of square matrices of 512, 1024 and 2048, the best of them, timed in the same rounds as the steps. The
floor of a step is its counted work at that rate: no implementation of these convolutions in fp32 on this core
runs faster. Each round times the matrix products, then the steps of each width; figures are medians of CPU time
(process time), so other jobs on the machine disturb them little.

For a fit of `--steps-per-fit` steps the script prints the floor and the measured training step in minutes
(rendering, validation and Lightning not included), and the work a step could hold to fit `--budget-minutes` at
the measured fraction of the anchor's rate.

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_flop_floor.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_flop_floor.py --width-divisors 4 8 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from scarce._allocator import keep_freed_memory
from scarce.nets.fcn8s import FCN8s

GEMM_SIZES = (512, 1024, 2048)
# FCN8s children by part; every child is in one part (checked below).
PARTS = {"backbone": ("features",), "fc6 + fc7": ("fc6", "fc7"),
         "heads": ("score_fr", "score_pool4", "score_pool3", "up2_fr", "up2_pool4", "up8")}


def network(width_divisor: int) -> FCN8s:
    torch.manual_seed(0)
    return FCN8s(7, width_divisor=width_divisor, batch_norm=True).to(memory_format=torch.channels_last)


def step_flops(net: FCN8s, image: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """FLOPs of one training step's forward + backward pass (``total``) and of its forward pass by part of the
    network. The backward pass is not split: the counter's module scopes overlap there (a score layer's scope stays
    open while the backbone's gradients are computed), only its total is exact."""
    children = [name for name, _ in net.named_children()]
    if sorted(children) != sorted(c for part in PARTS.values() for c in part):
        raise SystemExit(f"segmentation_flop_floor: FCN8s children changed ({children}): update PARTS")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(image), mask).backward()
    net.zero_grad(set_to_none=True)
    by_module, prefix = counter.get_flop_counts(), type(net).__name__

    def forward_flops(child: str) -> float:
        # A child's own key when the counter has one, else the sum of its direct children's (nn.Sequential).
        keys = [f"{prefix}.{child}"] if f"{prefix}.{child}" in by_module else [
            k for k in by_module if k.startswith(f"{prefix}.{child}.") and k.count(".") == 2]
        return float(sum(by_module[k].get(torch.ops.aten.convolution, 0) for k in keys))

    flops = {part: sum(forward_flops(c) for c in members) for part, members in PARTS.items()}
    flops["forward"] = float(by_module["Global"].get(torch.ops.aten.convolution, 0))
    flops["total"] = float(counter.get_total_flops())
    return flops


def gemm_rate(size: int, seconds: float = 1.0) -> float:
    """FLOP per CPU second of ``size x size`` single-precision matrix products, over about ``seconds``."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    count, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        torch.mm(a, b, out=out)
        count += 1
    return 2 * size ** 3 * count / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="square input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width-divisors", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--steps-per-fit", type=int, default=6000, help="the configs' budget")
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per width and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # The configs' step; imported here, where the script runs from benchmarks/ (sys.path[0]), not when imported.
    from segmentation_step_parts import cpu_seconds, whole_step

    torch.set_num_threads(args.threads)
    applied = keep_freed_memory()  # as `scarce fit` does

    image = torch.rand(args.batch_size, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    mask = torch.randint(0, 7, (args.batch_size, args.size, args.size))
    flops = {w: step_flops(network(w), image, mask) for w in args.width_divisors}
    steps: dict[int, Callable[[], None]] = {w: whole_step(network(w), image, mask, fused=False)
                                            for w in args.width_divisors}
    print(f"FCN-8s, vgg16_bn, channels_last, {args.batch_size}x3x{args.size}x{args.size}, {args.threads} thread(s), "
          f"malloc settings of scarce fit {'applied' if applied else 'NOT applied'}; per round: best sgemm of "
          f"{', '.join(map(str, GEMM_SIZES))} (anchor), median CPU ms of {args.steps} steps after {args.warmup}")
    rates: list[float] = []
    times: dict[int, list[float]] = {w: [] for w in args.width_divisors}
    for r in range(args.rounds):
        rates.append(max(gemm_rate(n) for n in GEMM_SIZES))
        for w in args.width_divisors:
            times[w].append(cpu_seconds(steps[w], args.steps, args.warmup))
        print(f"round {r}: sgemm {rates[-1] / 1e9:.1f} GFLOP/s; "
              + ", ".join(f"width 1/{w} {times[w][-1] * 1e3:.0f} ms" for w in args.width_divisors), flush=True)

    rate = statistics.median(rates)
    budget_s = args.budget_minutes * 60
    print(f"\nanchor: sgemm {rate / 1e9:.1f} GFLOP/s (median of rounds, "
          f"{min(rates) / 1e9:.1f}-{max(rates) / 1e9:.1f})")
    print(f"| width | GFLOP a step (forward: backbone / fc6 + fc7 / heads) | floor ms a step | measured ms a step | "
          f"fraction of the anchor's rate | floor, {args.steps_per_fit} steps | measured, {args.steps_per_fit} steps "
          f"| GFLOP a step that fits {args.budget_minutes:g} min at that fraction |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for w in args.width_divisors:
        f, measured = flops[w], statistics.median(times[w])
        floor = f["total"] / rate
        fraction = floor / measured
        fits = budget_s / args.steps_per_fit * rate * fraction
        parts = " / ".join(f"{f[p] / 1e9:.2f}" for p in PARTS)
        print(f"| 1/{w} | {f['total'] / 1e9:.2f} ({f['forward'] / 1e9:.2f}: {parts}) | {floor * 1e3:.0f} | "
              f"{measured * 1e3:.0f} | {fraction:.0%} | {floor * args.steps_per_fit / 60:.1f} min | "
              f"{measured * args.steps_per_fit / 60:.1f} min | {fits / 1e9:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
