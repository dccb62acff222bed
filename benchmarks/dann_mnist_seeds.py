"""MNIST -> MNIST-M: source-only and DANN over seeds with the demo's budget (or any), mean and std.

Each seed is one ``scarce demo`` run (both models, same data); the source-only model is the anchor of the
same run. Usage:

    .venv/bin/python benchmarks/dann_mnist_seeds.py [--seeds 1 2 3] [--dann-epochs 10] [--source-only-epochs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from scarce.demo import run_demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dann-epochs", type=int, default=10)
    parser.add_argument("--source-only-epochs", type=int, default=5)
    parser.add_argument("--out", default="runs/bench_dann_mnist")
    args = parser.parse_args(argv)
    reports = [run_demo(Path(args.out) / f"seed{seed}", args.dann_epochs, args.source_only_epochs, seed, figures=False)
               for seed in args.seeds]
    print(f"\nMNIST -> MNIST-M test accuracy over seeds {args.seeds} "
          f"(DANN {args.dann_epochs} epochs, source-only {args.source_only_epochs} epochs)")
    print("| model | target mean | target std | source mean | per-seed target | train s (mean) |")
    print("| --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name in ("source_only", "dann"):
        tgt = [r["results"][name]["target_test_acc"] for r in reports]
        src = [r["results"][name]["source_test_acc"] for r in reports]
        secs = statistics.mean(r["results"][name]["train_seconds"] for r in reports)
        std = statistics.stdev(tgt) if len(tgt) > 1 else 0.0
        summary[name] = {"target_mean": statistics.mean(tgt), "target_std": std, "source_mean": statistics.mean(src)}
        print(f"| {name} | {statistics.mean(tgt):.4f} | {std:.4f} | {statistics.mean(src):.4f} | "
              f"{', '.join(f'{a:.4f}' for a in tgt)} | {secs:.0f} |")
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
