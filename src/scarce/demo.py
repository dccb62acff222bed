"""``scarce demo``: the main job. Source-only vs DANN on MNIST -> MNIST-M, on the CPU, in one command.

Trains both models from the packaged configs ``source_only_mnist_mnistm`` and ``dann_mnist_mnistm``
(:mod:`scarce.packaged_configs`; the repository's ``configs/`` folder) with the demo's epoch budget, tests both
on the MNIST and MNIST-M test splits, prints a table, and writes into the run folder: ``results.json`` (with the
seconds of every phase), the two configs as run, ``samples.png`` (source and target digits) and ``embedding.png``
(t-SNE of each model's features, coloured by domain), plus CSV / TensorBoard logs and checkpoints.

Where the time goes (measured in benchmarks/RESULTS.md, "make demo"): almost all of it is the two fits. They do
not depend on each other, so with two or more CPUs they run at once, each in its own spawned process with
``cpus // 2`` torch threads (``--jobs 1``: one after the other, each with every thread). On two cores this beats
one fit on two threads after the other: the digits network's small convolutions gain little from a second
thread (``benchmarks/dann_step_options.py``), and two threads of one process on a core shared with other jobs
wait for each other. Each process then tests its model and computes its t-SNE, so the source-only one's overlaps
the DANN fit. Every phase prints one line with its time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from scarce._errors import ScarceError
from scarce.packaged_configs import CONFIG_ROOT

__all__ = ["main", "run_demo"]

CONFIG_DIR = CONFIG_ROOT
MODELS = {"source_only": "source_only_mnist_mnistm.yaml", "dann": "dann_mnist_mnistm.yaml"}
EMBEDDING_POINTS = 300
"""Test digits per domain in each model's t-SNE."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scarce demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--dann-epochs", type=int, default=10, help="DANN epochs (default: 10)")
    p.add_argument("--source-only-epochs", type=int, default=5, help="source-only epochs (default: 5)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the training runs (default: 1234)")
    p.add_argument("--limit-train", type=int, default=None, help="use only N training digits per domain (quick look)")
    p.add_argument("--limit-eval", type=int, default=None, help="use only N val/test digits per domain")
    p.add_argument("--config-dir", default=str(CONFIG_DIR),
                   help="folder holding the two configs (default: the packaged ones; `scarce configs copy` copies)")
    p.add_argument("--no-figures", action="store_true", help="skip the t-SNE figure")
    p.add_argument("--jobs", type=int, default=None,
                   help="models trained at once, each in its own process (default: 2 with 2 or more CPUs, else 1)")
    return p


def _run_config(config: dict, out: Path, name: str, epochs: int, seed: int, limits: dict) -> Path:
    """The repository config with the demo's budget and run folder, saved next to the results."""
    config = json.loads(json.dumps(config))  # deep copy
    config["seed_everything"] = seed
    config["trainer"]["max_epochs"] = epochs
    # One line per epoch and phase instead: two processes' progress bars would overwrite each other.
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["enable_model_summary"] = False
    for logger in config["trainer"].get("logger", []):
        logger["init_args"]["save_dir"] = str(out / name)
    config["data"]["init_args"].update({k: v for k, v in limits.items() if v is not None})
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class _Phases:
    """Times named phases of one model's run and prints a line as each ends."""

    def __init__(self, model: str) -> None:
        self.model, self.seconds = model, {}

    @contextlib.contextmanager
    def __call__(self, phase: str, what: str = ""):
        start = time.perf_counter()
        yield
        self.seconds[phase] = round(time.perf_counter() - start, 1)
        print(f"[demo] {self.model}: {phase}{what} {self.seconds[phase]:.1f} s", flush=True)


def _epoch_lines(model: str):
    """A callback printing one line per training epoch: its time and the validation accuracies."""
    from lightning.pytorch.callbacks import Callback

    class EpochLines(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # after the epoch's validation
            metrics = trainer.callback_metrics
            accs = ", ".join(f"{k} {float(metrics[k]):.4f}" for k in ("val/source_acc", "val/target_acc")
                             if k in metrics)
            print(f"[demo] {model}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
                  f"{time.perf_counter() - self.start:.1f} s ({accs})", flush=True)

    return EpochLines()


def _run_model(name: str, config_path: Path, threads: int, embedding_points: int) -> dict:
    """Fit, test and embed one model; in its own process when the demo trains the models at once."""
    torch.set_num_threads(threads)
    phases = _Phases(name)
    with phases("setup", " (Lightning, model, trainer)"):
        from scarce.cli import lightning_cli

        cli = lightning_cli(["--config", str(config_path)], run=False)
    datamodule = cli.datamodule
    with phases("data", " (MNIST, MNIST-M built or read from the cache)"):
        datamodule.prepare_data()
        datamodule.setup("fit")
    cli.trainer.callbacks.append(_epoch_lines(name))
    with phases("fit", f" ({cli.trainer.max_epochs} epochs)"):
        cli.trainer.fit(cli.model, datamodule)
    with phases("test"):
        tested = cli.trainer.test(cli.model, datamodule, verbose=False)
    merged = {k: float(v) for r in tested for k, v in r.items()}
    result = {
        "source_test_acc": merged["test/source_acc"], "target_test_acc": merged["test/target_acc"],
        "domain_test_acc": merged.get("test/domain_acc"), "train_seconds": phases.seconds["fit"],
        "epochs": cli.trainer.current_epoch,
    }
    source, target = datamodule.datasets["source_test"], datamodule.datasets["target_test"]
    samples = torch.cat([torch.stack([d[i]["image"] for i in range(16)]) for d in (source, target)])
    embedding = None
    if embedding_points:
        counts = " + ".join(str(min(embedding_points, len(d))) for d in (source, target))
        with phases("t-SNE", f" ({counts} test digits)"):
            embedding = _embedding(cli.model, source, target, embedding_points)
    return {"result": result, "phases": phases.seconds, "samples": samples, "embedding": embedding}


def _features(model, dataset, n: int) -> torch.Tensor:
    model.eval()
    images = torch.stack([dataset[i]["image"] for i in range(min(n, len(dataset)))])
    with torch.no_grad():
        return model.embed(images)


def _embedding(model, source, target, n: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of the features of ``n`` source and ``n`` target test digits, and their domains (0, 1)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    feats = torch.cat([_features(model, source, n), _features(model, target, n)]).numpy()
    domain = np.r_[np.zeros(min(n, len(source))), np.ones(min(n, len(target)))]
    reduced = PCA(n_components=min(50, feats.shape[1], len(feats) - 1), random_state=0).fit_transform(feats)
    xy = TSNE(n_components=2, init="pca", perplexity=min(30, len(feats) // 4), random_state=0).fit_transform(reduced)
    return xy, domain


def _save_figures(out: Path, samples: torch.Tensor, embeddings: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid, save_image

    save_image(make_grid(samples, nrow=16, padding=2, pad_value=1.0), out / "samples.png")
    fig, axes = plt.subplots(1, len(embeddings), figsize=(6 * len(embeddings), 5.5))
    for ax, (name, (xy, domain)) in zip(np.atleast_1d(axes), embeddings.items()):
        for d, (label, colour) in enumerate((("MNIST (source)", "tab:blue"), ("MNIST-M (target)", "tab:red"))):
            ax.scatter(*xy[domain == d].T, s=4, c=colour, label=label, alpha=0.6)
        ax.set_title(f"{name}: t-SNE of features")
        ax.legend(markerscale=3)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "embedding.png", dpi=110)
    plt.close(fig)
    return ["samples.png", "embedding.png"]


def _table(results: dict) -> str:
    lines = ["| model | MNIST test acc (source) | MNIST-M test acc (target) | epochs | train time (s) |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['source_test_acc']:.4f} | {r['target_test_acc']:.4f} | {r['epochs']} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines)


@contextlib.contextmanager
def _omp_threads(threads: int):
    """``OMP_NUM_THREADS`` for the processes started inside (torch and scikit-learn read it when they load)."""
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _run_models(paths: dict[str, Path], jobs: int, threads: int, embedding_points: int) -> dict[str, dict]:
    """Run every model: in this process one after the other (``jobs == 1``), or in ``jobs`` spawned processes."""
    if jobs == 1:
        return {name: _run_model(name, path, threads, embedding_points) for name, path in paths.items()}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    runs = {}
    # spawn, not fork: a forked child would inherit this process's torch thread pool and its locks.
    with _omp_threads(threads), ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        # The longest fit first, so it never waits for a free process.
        futures = {name: pool.submit(_run_model, name, paths[name], threads, embedding_points)
                   for name in sorted(paths, key=lambda n: n != "dann")}
        for name in paths:
            try:
                runs[name] = futures[name].result()
            except BrokenProcessPool as err:
                raise ScarceError(f"the process training {name!r} died before it finished ({err}); "
                                  "rerun with --jobs 1 to train in this process and see its error") from err
    return runs


def run_demo(out: str | Path = "runs/demo", dann_epochs: int = 10, source_only_epochs: int = 5, seed: int = 1234,
             limit_train: int | None = None, limit_eval: int | None = None, config_dir: str | Path = CONFIG_DIR,
             figures: bool = True, jobs: int | None = None) -> dict:
    cpus = os.cpu_count() or 1
    jobs = min(2, cpus) if jobs is None else jobs
    if not 1 <= jobs <= len(MODELS):
        raise ScarceError(f"--jobs {jobs}: expected 1 or {len(MODELS)} (models trained at once)")
    threads = max(1, cpus // jobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_dir = Path(config_dir)
    limits = {"limit_train": limit_train, "limit_eval": limit_eval}
    epochs = {"source_only": source_only_epochs, "dann": dann_epochs}
    start = time.perf_counter()
    paths = {}
    for name, filename in MODELS.items():
        source = config_dir / filename
        if not source.is_file():
            raise ScarceError(f"demo config {source} not found; pass --config-dir the folder with "
                              f"{sorted(MODELS.values())}")
        paths[name] = _run_config(yaml.safe_load(source.read_text()), out, name, epochs[name], seed, limits)
    how = "one after the other" if jobs == 1 else f"at once in {jobs} processes"
    print(f"[demo] training {', '.join(f'{n} ({epochs[n]} epochs)' for n in MODELS)} {how}, "
          f"{threads} torch thread(s) each; configs in {out}/", flush=True)
    runs = _run_models(paths, jobs, threads, EMBEDDING_POINTS if figures else 0)
    results = {name: runs[name]["result"] for name in MODELS}
    written = []
    if figures:
        figure_start = time.perf_counter()
        written = _save_figures(out, runs["source_only"]["samples"], {n: runs[n]["embedding"] for n in MODELS})
        print(f"[demo] figures {time.perf_counter() - figure_start:.1f} s", flush=True)
    report = {
        "task": "MNIST -> MNIST-M", "seed": seed, "results": results,
        "phases": {name: runs[name]["phases"] for name in MODELS},
        "total_seconds": round(time.perf_counter() - start, 1),
        "jobs": jobs, "threads_per_job": threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": cpus,
                    "torch": torch.__version__, "load_average": [round(x, 2) for x in os.getloadavg()]},
        "figures": written,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print("\n" + _table(results))
    print(f"\ntotal {report['total_seconds']:.0f} s; results, configs and figures in {out}/")
    return report


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    run_demo(args.out, args.dann_epochs, args.source_only_epochs, args.seed, args.limit_train, args.limit_eval,
             args.config_dir, figures=not args.no_figures, jobs=args.jobs)
    return 0
