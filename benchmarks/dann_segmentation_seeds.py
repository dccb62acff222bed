"""Embedded realism gap (book 7.6): source-only FCN-8s vs FCN-8s + DANN, target and source mIoU over seeds.

Each run is a plain ``scarce fit`` of a repository config with ``--seed_everything=SEED`` (same data, same
budget: ``configs/fcn8s_rendered.yaml`` is the anchor, measured in the same run), in its own folder under
``--out``; the figures are the last validation's ``val/source_miou`` and ``val/target_miou`` (end of training)
read from each run's ``metrics.csv``. Prints mean and std over seeds, DANN minus source-only, and whether the
issue's target holds (target mIoU up, source mIoU down by at most 2 points). ``--jobs N`` runs N fits at once,
each with ``OMP_NUM_THREADS = cores / N`` (the figures do not depend on it; only the wall time does). Usage:

    .venv/bin/python benchmarks/dann_segmentation_seeds.py [--seeds 0 1 2] [--placements output pool5]
        [--jobs 2] [--out runs/dann_segmentation_seeds] [-- EXTRA SCARCE FIT ARGS]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")
KEYS = ("val/source_miou", "val/target_miou")


def last_validation(run_dir: Path) -> dict[str, float]:
    """The last row of ``metrics.csv`` that has both mIoUs."""
    files = sorted(run_dir.glob("runs/*/csv/version_*/metrics.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir}/runs")
    with open(files[-1]) as f:
        rows = [r for r in csv.DictReader(f) if all(r.get(k) for k in KEYS)]
    if not rows:
        raise ValueError(f"{files[-1]} has no validation row with {KEYS}")
    return {k: float(rows[-1][k]) for k in KEYS}


def fit(config: str, seed: int, run_dir: Path, extra: list[str], threads: int) -> dict[str, float]:
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(SCARCE), "fit", "--config", str(REPO / "configs" / config), f"--seed_everything={seed}",
           "--trainer.enable_progress_bar=false", *extra]
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, check=False, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS=str(threads)))
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {run_dir / 'log.txt'}")
    return last_validation(run_dir)


def _stats(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {std:.3f}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--placements", nargs="+", default=["output"], choices=["pool5", "output"])
    parser.add_argument("--jobs", type=int, default=1, help="fits run at once")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "dann_segmentation_seeds")
    args = parser.parse_args(argv)
    arms = [("source-only", "fcn8s_rendered.yaml", [])]
    arms += [(f"DANN {p}", "dann_fcn8s_rendered.yaml", [f"--model.init_args.placement={p}"]) for p in args.placements]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    def run(name: str, config: str, arm_args: list[str], seed: int) -> dict[str, float]:
        start = time.perf_counter()
        run_dir = args.out / name.replace(" ", "_") / f"seed{seed}"
        result = fit(config, seed, run_dir, [*arm_args, *extra], threads)
        print(f"{name:<12} seed {seed}: source mIoU {result[KEYS[0]]:.3f}, target mIoU {result[KEYS[1]]:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        return result

    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {name: [pool.submit(run, name, config, arm_args, seed) for seed in args.seeds]
                   for name, config, arm_args in arms}
        results = {name: [f.result() for f in runs] for name, runs in futures.items()}
    base = results["source-only"]
    print("\n| model | source mIoU | target mIoU | seeds |\n| --- | --- | --- | --- |")
    for name, runs in results.items():
        print(f"| {name} | {_stats([r[KEYS[0]] for r in runs])} | {_stats([r[KEYS[1]] for r in runs])} | "
              f"{' '.join(map(str, args.seeds))} |")
    ok = True
    for name, runs in results.items():
        if name == "source-only":
            continue
        d_target = statistics.mean(r[KEYS[1]] for r in runs) - statistics.mean(r[KEYS[1]] for r in base)
        d_source = statistics.mean(r[KEYS[0]] for r in runs) - statistics.mean(r[KEYS[0]] for r in base)
        met = d_target > 0 and d_source >= -0.02
        ok &= met
        print(f"{name}: target mIoU {d_target:+.3f}, source mIoU {d_source:+.3f} vs source-only -> "
              f"{'target met' if met else 'target NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
