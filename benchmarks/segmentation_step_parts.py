"""Where one FCN-8s training step spends its CPU time: the whole step (anchor) against fc6 + fc7 alone, and
the whole step with Adam's fused CPU kernel instead of PyTorch's default for-loop one.

The whole step is what `Segmentation` does per batch of the embedded configs (FCN-8s at `--width-divisor` on the
vgg16_bn layout, channels_last, pixel-wise cross-entropy, backward, Adam). The part is the same work cut out of
it: fc6 and fc7 (forward, backward and their Adam update) on an input of pool5's shape. Each figure is the median
CPU time per step of `--steps` steps after `--warmup`, per round; rounds alternate the order. CPU time, not wall
time, so other jobs on a shared machine disturb it little (the memory bandwidth they take still shows). At 128x128
pool5 is 4x4 and fc6 and fc7 hold most of the weights; fc6 skips the products with its zero padding there
(`SameConv2d`; `benchmarks/segmentation_fc6.py` times it against an ordinary convolution).

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_step_parts.py        # the embedded budget
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_step_parts.py --size 256 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from scarce.nets.fcn8s import FCN8s


def cpu_seconds(step: Callable[[], None], steps: int, warmup: int) -> float:
    """Median process CPU seconds of ``step`` over ``steps`` calls after ``warmup``."""
    times = []
    for i in range(warmup + steps):
        start = time.process_time()
        step()
        if i >= warmup:
            times.append(time.process_time() - start)
    return statistics.median(times)


def whole_step(net: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, fused: bool) -> Callable[[], None]:
    opt = torch.optim.Adam(net.parameters(), 3e-3, fused=fused)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(image), mask).backward()
        opt.step()
    return step


def fc_step(net: FCN8s, pool5: torch.Tensor) -> Callable[[], None]:
    fc = torch.nn.Sequential(net.fc6, net.fc7)
    opt = torch.optim.Adam(fc.parameters(), 3e-3)
    grad = torch.randn_like(fc(pool5))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        fc(pool5).backward(grad)
        opt.step()
    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="square input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width-divisor", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    def network() -> FCN8s:
        torch.manual_seed(0)
        return FCN8s(args.num_classes, width_divisor=args.width_divisor, batch_norm=True).to(
            memory_format=torch.channels_last)

    image = torch.rand(args.batch_size, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    mask = torch.randint(0, args.num_classes, (args.batch_size, args.size, args.size))
    with torch.no_grad():
        pool5 = network().forward_features(image)["pool5"]
    anchor = "whole step, Adam for-loop (anchor)"
    variants: dict[str, Callable[[], Callable[[], None]]] = {
        anchor: lambda: whole_step(network(), image, mask, fused=False),
        "whole step, Adam fused": lambda: whole_step(network(), image, mask, fused=True),
        "fc6 + fc7 alone (forward, backward, Adam)": lambda: fc_step(network(), pool5.clone().requires_grad_()),
    }
    net = network()
    fc_params = sum(p.numel() for p in (*net.fc6.parameters(), *net.fc7.parameters()))
    all_params = sum(p.numel() for p in net.parameters())
    print(f"FCN-8s 1/{args.width_divisor} width, vgg16_bn, channels_last, {args.batch_size}x3x{args.size}x{args.size}, "
          f"{args.threads} thread(s); pool5 {tuple(pool5.shape[1:])}; fc6 + fc7 hold {fc_params / 1e6:.2f}M of "
          f"{all_params / 1e6:.2f}M parameters; median CPU ms per step of {args.steps} steps per round")
    results: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(0)
    for r in range(args.rounds):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            results[name].append(cpu_seconds(variants[name](), args.steps, args.warmup))
        print(f"round {r}: " + ", ".join(f"{name} {results[name][-1] * 1e3:.1f} ms" for name in variants), flush=True)
    print("| part | CPU ms/step (median of rounds) | share of the whole step, per round (min-max) |")
    print("| --- | --- | --- |")
    for name in variants:
        shares = [part / whole for part, whole in zip(results[name], results[anchor])]
        print(f"| {name} | {statistics.median(results[name]) * 1e3:.1f} | {statistics.median(shares):.0%} "
              f"({min(shares):.0%}-{max(shares):.0%}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
