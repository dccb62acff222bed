"""FCN-8s training steps on the CPU with fc6 as PyTorch's ordinary convolution (anchor) against scarce's `SameConv2d`,
which computes only the products that meet pool5.

At the embedded budget (128x128 inputs) pool5 is 4x4 and fc6's 7x7 kernel, padded by 3, reaches past it on every
side: an ordinary convolution computes 49 products per output and channel, 33 of them with zero padding.
`scarce.nets.fcn8s.SameConv2d` computes the same sums, and only the 16 that meet the map, as one convolution of the
kernel (read as images) with pool5 (read as filters). The anchor is the same network with the same weights whose fc6
is a plain `torch.nn.Conv2d(..., padding=3)`. One step is what `Segmentation` does per batch of the embedded configs:
forward, pixel-wise cross-entropy, backward, Adam (vgg16_bn layout, channels_last as the configs; `--nchw` for
PyTorch's default layout). Batch 8 is a one-domain step; 16 is a step that puts source and target through the
network as one batch (joint batch norm, self-training). Before timing, the script checks that both give the same
logits and gradients (float summation order aside) and prints the largest differences; it exits 1 if they differ.

Steps of all variants are interleaved (the order rotates every step), so a machine whose speed drifts slows every
variant alike; each round prints the median CPU time per step of `--steps` steps per variant after `--warmup`.

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_fc6.py                 # the embedded budget
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_fc6.py --rounds 5 --nchw
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from scarce.nets.fcn8s import FCN8s, SameConv2d


def with_plain_fc6(net: FCN8s) -> FCN8s:
    """A copy of ``net`` whose fc6 is an ordinary ``nn.Conv2d`` holding the same weights (the anchor)."""
    anchor = copy.deepcopy(net)
    same = anchor.fc6[0]
    plain = torch.nn.Conv2d(same.in_channels, same.out_channels, same.kernel_size, padding=same.padding)
    plain.weight, plain.bias = same.weight, same.bias
    anchor.fc6[0] = plain
    return anchor


def largest_differences(net: FCN8s, anchor: FCN8s, image: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Largest |logit| difference, and largest |gradient| difference over the largest |gradient|, of a training
    step's forward and backward of ``net`` against ``anchor``, on copies (dropout draws the same mask: the same seed,
    and fc6's output in the same layout)."""
    results = []
    for model in (copy.deepcopy(net), copy.deepcopy(anchor)):
        torch.manual_seed(0)
        logits = model(image)
        F.cross_entropy(logits, mask).backward()
        results.append((logits.detach(), [p.grad for p in model.parameters()]))
    (logits, grads), (logits_anchor, grads_anchor) = results
    # Relative to the largest gradient of all: the biases before batch norm have a gradient of exactly zero in
    # arithmetic, so theirs is rounding noise in both.
    largest = max(a.abs().max().item() for a in grads_anchor)
    difference = max((g - a).abs().max().item() for g, a in zip(grads, grads_anchor))
    return (logits - logits_anchor).abs().max().item(), difference / largest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="square input size (128: pool5 is 4x4)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--width-divisor", type=int, default=4)
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--nchw", action="store_true", help="PyTorch's default layout instead of channels_last")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layout = torch.contiguous_format if args.nchw else torch.channels_last

    torch.manual_seed(0)
    net = FCN8s(args.num_classes, width_divisor=args.width_divisor, batch_norm=True).to(memory_format=layout)
    assert isinstance(net.fc6[0], SameConv2d)
    variants = {}
    for batch in args.batch_sizes:
        image = torch.rand(batch, 3, args.size, args.size).contiguous(memory_format=layout)
        mask = torch.randint(0, args.num_classes, (batch, args.size, args.size))
        for name, model in ((f"batch {batch}, fc6 nn.Conv2d (anchor)", with_plain_fc6(net)),
                            (f"batch {batch}, fc6 SameConv2d", copy.deepcopy(net))):
            variants[name] = (model, torch.optim.Adam(model.parameters(), 3e-3), image, mask)
    with torch.no_grad():
        pool5 = net.forward_features(variants[next(iter(variants))][2])["pool5"].shape[1:]
    print(f"FCN-8s 1/{args.width_divisor} width, vgg16_bn, {'NCHW' if args.nchw else 'channels_last'}, "
          f"{args.size}x{args.size}, {args.threads} thread(s); pool5 {tuple(pool5)}, fc6 kernel 7x7 padding 3; "
          f"median CPU ms per step of {args.steps} steps per variant and round, steps interleaved")
    for batch in args.batch_sizes:
        model, _, image, mask = variants[f"batch {batch}, fc6 SameConv2d"]
        logits, grads = largest_differences(model, variants[f"batch {batch}, fc6 nn.Conv2d (anchor)"][0], image, mask)
        print(f"batch {batch}: largest logit difference {logits:.1e}, largest gradient difference {grads:.1e} of the "
              "largest gradient")
        if logits > 1e-3 or grads > 1e-3:
            print(f"segmentation_fc6: SameConv2d does not compute what nn.Conv2d does (batch {batch}); not timing",
                  file=sys.stderr)
            return 1

    def step(name: str) -> float:
        model, opt, image, mask = variants[name]
        start = time.process_time()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(image), mask).backward()
        opt.step()
        return time.process_time() - start

    names = list(variants)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.warmup + args.steps):
            k = (r * (args.warmup + args.steps) + i) % len(names)
            for name in names[k:] + names[:k]:
                seconds = step(name)
                if i >= args.warmup:
                    times[name].append(seconds)
        for name in names:
            results[name].append(statistics.median(times[name]))
        print(f"round {r}: " + ", ".join(f"{name} {results[name][-1] * 1e3:.0f} ms" for name in names), flush=True)
    print("| batch | fc6 | CPU ms/step (median of rounds) | speed-up over the anchor, median (per round min-max) |")
    print("| --- | --- | --- | --- |")
    for batch in args.batch_sizes:
        anchor = results[f"batch {batch}, fc6 nn.Conv2d (anchor)"]
        for kind in ("nn.Conv2d (anchor)", "SameConv2d"):
            times = results[f"batch {batch}, fc6 {kind}"]
            ratios = [a / t for a, t in zip(anchor, times)]
            print(f"| {batch} | {kind} | {statistics.median(times) * 1e3:.0f} | {statistics.median(ratios):.2f}x "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
