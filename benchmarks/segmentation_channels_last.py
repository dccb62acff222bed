"""FCN-8s training steps per second on the CPU: the NCHW layout (anchor) against channels_last (bf16, torch.compile).

One training step is what `Segmentation` does per batch of the embedded configs: FCN-8s forward, pixel-wise
cross-entropy, backward, Adam step, on the same random batch in both layouts. The anchor is the same network in
PyTorch's default NCHW layout; channels_last converts the weights once and each batch on entry
(`model.init_args.channels_last`). Both start from the same weights; the script first checks that both layouts give
the same logits (float summation order aside) and prints the largest difference. Rounds alternate the order of
the variants; each prints the median step time of `--steps` steps after `--warmup`, and the ratio to the anchor.

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_channels_last.py            # the embedded config
    .venv/bin/python benchmarks/segmentation_channels_last.py --threads 2 --bf16 --rounds 5
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_channels_last.py --width-divisor 4 --compile
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
import torch.nn.functional as F

from scarce.nets.fcn8s import FCN8s


def step_times(net: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor, steps: int, warmup: int,
               channels_last: bool, bf16: bool, compiled: bool = False) -> tuple[list[float], float]:
    """Seconds per training step (forward, loss, backward, Adam), ``steps`` of them after ``warmup``, and the
    seconds of the first warm-up step (where ``torch.compile`` compiles)."""
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    forward = torch.compile(net) if compiled else net
    times, first = [], 0.0
    for i in range(warmup + steps):
        start = time.perf_counter()
        x = image.contiguous(memory_format=torch.channels_last) if channels_last else image
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x).float(), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i == 0:
            first = time.perf_counter() - start
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times, first


def largest_difference(net: torch.nn.Module, image: torch.Tensor, reference: torch.Tensor,
                       compiled: bool = False) -> float:
    """Largest |logit difference| of ``net`` in channels_last (compiled or not) against the NCHW ``reference``."""
    nhwc = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    forward = torch.compile(nhwc) if compiled else nhwc
    with torch.no_grad():
        return (forward(image.contiguous(memory_format=torch.channels_last)) - reference).abs().max().item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="square input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width-divisor", type=int, default=8)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="also time channels_last + bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="also time channels_last under torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = FCN8s(args.num_classes, width_divisor=args.width_divisor, batch_norm=True)
    image = torch.rand(args.batch_size, 3, args.size, args.size)
    mask = torch.randint(0, args.num_classes, (args.batch_size, args.size, args.size))

    with torch.no_grad():
        reference = copy.deepcopy(net).eval()(image)
    scale = reference.abs().max().item()
    checks = {"NHWC": False, "compiled NHWC": True} if args.compile else {"NHWC": False}
    for label, compiled in checks.items():
        diff = largest_difference(net, image, reference, compiled)
        print(f"same logits: max |{label} - NCHW| = {diff:.2e} (logits up to {scale:.2f})")
        if not diff <= 1e-4 * max(1.0, scale):
            print(f"FAILED: {label} and NCHW disagree beyond float summation order")
            return 1

    variants = {"NCHW (anchor)": (False, False, False), "channels_last": (True, False, False)}
    if args.bf16:
        variants["channels_last + bf16"] = (True, True, False)
    if args.compile:
        variants["channels_last + torch.compile"] = (True, False, True)
    medians: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(0)
    print(f"FCN-8s 1/{args.width_divisor} width, batch_norm, {args.batch_size}x3x{args.size}x{args.size}, "
          f"{args.threads} thread(s); median ms/step of {args.steps} steps per round")
    for r in range(args.rounds):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            channels_last, bf16, compiled = variants[name]
            times, first = step_times(copy.deepcopy(net), image, mask, args.steps, args.warmup,
                                      channels_last, bf16, compiled)
            medians[name].append(statistics.median(times))
            if compiled:
                print(f"round {r}: {name}: first step (compiling) {first:.1f} s")
        anchor = medians["NCHW (anchor)"][-1]
        print(f"round {r}: " + ", ".join(f"{name} {medians[name][-1] * 1e3:.1f} ms ({anchor / medians[name][-1]:.2f}x)"
                                        for name in variants))
    print("| variant | ms/step (median of rounds) | speed-up vs NCHW, per round (min-max) |")
    print("| --- | --- | --- |")
    for name in variants:
        ratios = [a / m for a, m in zip(medians["NCHW (anchor)"], medians[name])]
        print(f"| {name} | {statistics.median(medians[name]) * 1e3:.1f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
