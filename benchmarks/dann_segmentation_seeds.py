"""Embedded realism gap (book 7.6): source-only FCN-8s vs FCN-8s + DANN, target and source mIoU over seeds.

Each run is a plain ``scarce fit`` of a repository config with ``--seed_everything=SEED`` (same data, same
budget: ``configs/fcn8s_rendered.yaml`` is the anchor, measured in the same run), in its own folder under
``--out``; the figures are the last validation's ``val/source_miou`` and ``val/target_miou`` (end of training)
read from each run's ``metrics.csv``. Prints mean and std over seeds, DANN minus source-only, and whether the
issue's target holds (target mIoU up, source mIoU down by at most 2 points).

The validation scenes steer choices (checkpoints, and the configs' settings were picked on them), so each final
model is also tested with ``scarce test`` on ``--test-scenes`` held-out target scenes that nothing was chosen on
(rendered from the target's ``seed + 2``): the ``test target mIoU`` column.

``--jobs N`` runs N fits at once, each with ``OMP_NUM_THREADS = cores / N`` (the figures do not depend on it; only
the wall time does). ``--reuse`` keeps the fits already finished under ``--out`` and only runs what is missing.
Usage:

    .venv/bin/python benchmarks/dann_segmentation_seeds.py [--seeds 0 1 2] [--placements output pool5]
        [--jobs 2] [--test-scenes 256] [--reuse] [--out runs/dann_segmentation_seeds] [-- EXTRA SCARCE FIT ARGS]
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
TEST_KEY = "test/miou"


def last_row(run_dir: Path, keys: tuple[str, ...]) -> dict[str, float]:
    """The last row of the run's ``metrics.csv`` that has all ``keys``."""
    files = sorted(run_dir.glob("runs/*/csv/version_*/metrics.csv"))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir}/runs")
    with open(files[-1]) as f:
        rows = [r for r in csv.DictReader(f) if all(r.get(k) for k in keys)]
    if not rows:
        raise ValueError(f"{files[-1]} has no row with {keys}")
    return {k: float(rows[-1][k]) for k in keys}


def last_validation(run_dir: Path) -> dict[str, float]:
    """Both mIoUs of the last validation."""
    return last_row(run_dir, KEYS)


def _scarce(args: list[str], run_dir: Path, threads: int) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(SCARCE), *args, "--trainer.enable_progress_bar=false"]
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, check=False, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS=str(threads)))
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {run_dir / 'log.txt'}")


def fit(config: str, seed: int, run_dir: Path, extra: list[str], threads: int, reuse: bool = False) -> Path:
    """Train (unless ``reuse`` finds a finished run in ``run_dir``); returns the last checkpoint."""
    # ResumeCheckpoint's fixed folder (configs: runs/<experiment>/checkpoints); written last when training ends.
    last = "runs/*/checkpoints/last.ckpt"
    checkpoints = sorted(run_dir.glob(last))
    if not (reuse and checkpoints):
        _scarce(["fit", "--config", str(REPO / "configs" / config), f"--seed_everything={seed}", *extra],
                run_dir, threads)
        checkpoints = sorted(run_dir.glob(last))
    if not checkpoints:
        raise FileNotFoundError(f"no last.ckpt under {run_dir}/runs")
    return checkpoints[-1].resolve()


def test_target(config: str, seed: int, checkpoint: Path, scenes: int, run_dir: Path, extra: list[str],
                threads: int) -> float:
    """Target mIoU of ``checkpoint`` on ``scenes`` held-out target scenes (the data module's test split)."""
    _scarce(["test", "--config", str(REPO / "configs" / config), f"--seed_everything={seed}",
             f"--ckpt_path={checkpoint}", f"--data.init_args.target.num_val={scenes}", *extra], run_dir, threads)
    return last_row(run_dir, (TEST_KEY,))[TEST_KEY]


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
    parser.add_argument("--test-scenes", type=int, default=256, help="held-out target test scenes (0: no test)")
    parser.add_argument("--reuse", action="store_true", help="keep fits already finished under --out")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "dann_segmentation_seeds")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.test_scenes < 0:
        parser.error(f"--jobs must be >= 1 and --test-scenes >= 0 (got {args.jobs}, {args.test_scenes})")
    arms = [("source-only", "fcn8s_rendered.yaml", [])]
    arms += [(f"DANN {p}", "dann_fcn8s_rendered.yaml", [f"--model.init_args.placement={p}"]) for p in args.placements]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)

    def run(name: str, config: str, arm_args: list[str], seed: int) -> dict[str, float]:
        start = time.perf_counter()
        run_dir = args.out / name.replace(" ", "_") / f"seed{seed}"
        checkpoint = fit(config, seed, run_dir, [*arm_args, *extra], threads, args.reuse)
        result = last_validation(run_dir)
        if args.test_scenes:
            result[TEST_KEY] = test_target(config, seed, checkpoint, args.test_scenes, run_dir / "test",
                                           [*arm_args, *extra], threads)
        tested = f", test target mIoU {result[TEST_KEY]:.3f}" if TEST_KEY in result else ""
        print(f"{name:<12} seed {seed}: source mIoU {result[KEYS[0]]:.3f}, target mIoU {result[KEYS[1]]:.3f}"
              f"{tested} ({time.perf_counter() - start:.0f} s)", flush=True)
        return result

    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {name: [pool.submit(run, name, config, arm_args, seed) for seed in args.seeds]
                   for name, config, arm_args in arms}
        results = {name: [f.result() for f in runs] for name, runs in futures.items()}
    base = results["source-only"]
    tested = bool(args.test_scenes)
    print("\n| model | source mIoU | target mIoU |" + (" test target mIoU |" if tested else "") + " seeds |")
    print("| --- | --- | --- |" + (" --- |" if tested else "") + " --- |")
    for name, runs in results.items():
        test = f" {_stats([r[TEST_KEY] for r in runs])} |" if tested else ""
        print(f"| {name} | {_stats([r[KEYS[0]] for r in runs])} | {_stats([r[KEYS[1]] for r in runs])} |{test} "
              f"{' '.join(map(str, args.seeds))} |")
    def gain(runs: list[dict[str, float]], key: str) -> float:
        return statistics.mean(r[key] for r in runs) - statistics.mean(r[key] for r in base)

    ok = True
    for name, runs in results.items():
        if name == "source-only":
            continue
        d_target, d_source = gain(runs, KEYS[1]), gain(runs, KEYS[0])
        # Held out too, when tested: the gain must not be an artefact of choosing on the validation scenes.
        d_test = gain(runs, TEST_KEY) if tested else None
        met = d_target > 0 and d_source >= -0.02 and (d_test is None or d_test > 0)
        ok &= met
        held_out = f", held-out target mIoU {d_test:+.3f}" if tested else ""
        print(f"{name}: target mIoU {d_target:+.3f}, source mIoU {d_source:+.3f}{held_out} vs source-only -> "
              f"{'target met' if met else 'target NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
