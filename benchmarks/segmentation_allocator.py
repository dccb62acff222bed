"""FCN-8s training steps on the CPU with glibc's default malloc settings (anchor) against the settings the training
commands apply (`scarce._allocator.keep_freed_memory`): page faults and CPU time per step.

A training step allocates and frees the same large tensors every step (activations of a few MB, Adam's
temporaries as large as fc6's 25 MB weight). With glibc's defaults those blocks are mapped from the kernel and given
back when freed, so each step faults in fresh, kernel-zeroed pages; `scarce fit` keeps them (mmap threshold at
32 MiB, heap trimmed only beyond 2 GiB). The step is what `Segmentation` does per batch of
`configs/fcn8s_rendered.yaml`: FCN-8s at 1/4 width, vgg16_bn layout, channels_last, 128x128, forward, pixel-wise
cross-entropy, backward, Adam 3e-3 (PyTorch's default for-loop implementation, as the configs).

malloc settings are process-wide, so each variant runs in a fresh interpreter: the same seed, weights and batch, so
both compute the same steps; the script checks that the final weights are bit-for-bit equal (exits 1 otherwise).
The variants alternate within each round, first one then the other; each prints the median CPU time of `--steps`
steps after `--warmup`, the page faults and the kernel (system) CPU time per step. jemalloc or tcmalloc through
LD_PRELOAD would be the other fix an expert reaches for; neither is installed here, so they are not measured.

Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_allocator.py --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = {"default": "glibc defaults (anchor)", "scarce": "keep_freed_memory (scarce fit)"}


def run_steps(args: argparse.Namespace) -> dict:
    """The worker: ``args.steps`` timed training steps in this process; CPU ms, faults, system ms per step, and a
    digest of the final weights."""
    if args.worker == "scarce":
        from scarce._allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("segmentation_allocator: keep_freed_memory() did not apply here (no glibc mallopt, or "
                             "MALLOC_* / GLIBC_TUNABLES set in the environment)")
    import torch
    from segmentation_step_parts import whole_step  # the configs' step; this script runs from benchmarks/

    from scarce.nets.fcn8s import FCN8s

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last
    net = FCN8s(7, width_divisor=args.width_divisor, batch_norm=True).to(memory_format=layout)
    image = torch.rand(args.batch_size, 3, args.size, args.size).contiguous(memory_format=layout)
    mask = torch.randint(0, 7, (args.batch_size, args.size, args.size))
    step = whole_step(net, image, mask, fused=False)
    times = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    end = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    for tensor in net.state_dict().values():
        digest.update(tensor.contiguous().numpy().tobytes())
    return {"ms": statistics.median(times[args.warmup:]) * 1e3,
            "faults": (end.ru_minflt - usage.ru_minflt) / args.steps,
            "system_ms": (end.ru_stime - usage.ru_stime) / args.steps * 1e3,
            "digest": digest.hexdigest()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="square input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width-divisor", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_steps(args)))
        return 0

    print(f"FCN-8s 1/{args.width_divisor} width, vgg16_bn, channels_last, {args.size}x{args.size}, batch "
          f"{args.batch_size}, Adam (for-loop), {args.threads} thread(s); each variant in a fresh interpreter, "
          f"median CPU ms per step of {args.steps} steps after {args.warmup}")
    forwarded = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
                 if name not in ("worker", "rounds")]
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            out = subprocess.run([sys.executable, __file__, f"--worker={name}", *forwarded], check=True,
                                 capture_output=True, text=True).stdout
            results[name].append(json.loads(out.splitlines()[-1]))
        print(f"round {r}: " + ", ".join(f"{VARIANTS[name]} {results[name][-1]['ms']:.0f} ms, "
                                         f"{results[name][-1]['faults']:.0f} faults" for name in VARIANTS), flush=True)
    digests = {result["digest"] for runs in results.values() for result in runs}
    if len(digests) != 1:
        print(f"segmentation_allocator: the variants' final weights differ ({len(digests)} digests)", file=sys.stderr)
        return 1
    print("final weights bit-for-bit equal in every run")
    print("| malloc | CPU ms/step (median of rounds) | page faults/step | system CPU ms/step | speed-up over the "
          "anchor, median (per round min-max) |")
    print("| --- | --- | --- | --- | --- |")
    anchor = [result["ms"] for result in results["default"]]
    for name, label in VARIANTS.items():
        runs = results[name]
        ratios = [a / result["ms"] for a, result in zip(anchor, runs)]
        print(f"| {label} | {statistics.median(r['ms'] for r in runs):.0f} | "
              f"{statistics.median(r['faults'] for r in runs):.0f} | "
              f"{statistics.median(r['system_ms'] for r in runs):.1f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
