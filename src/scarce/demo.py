"""``scarce demo``: the main job. Source-only vs DANN on MNIST -> MNIST-M, on the CPU, in one command.

Trains both models from the packaged configs ``source_only_mnist_mnistm`` and ``dann_mnist_mnistm``
(:mod:`scarce.packaged_configs`; the repository's ``configs/`` folder) with the demo's epoch budget, tests both
on the MNIST and MNIST-M test splits, prints a table, and writes into the run folder: ``results.json``, the two
configs as run, ``samples.png`` (source and target digits) and ``embedding.png`` (t-SNE of each model's features,
coloured by domain), plus CSV / TensorBoard logs and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import yaml

from scarce._errors import ScarceError
from scarce.packaged_configs import CONFIG_ROOT

__all__ = ["main", "run_demo"]

CONFIG_DIR = CONFIG_ROOT
MODELS = {"source_only": "source_only_mnist_mnistm.yaml", "dann": "dann_mnist_mnistm.yaml"}


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
    return p


def _run_config(config: dict, out: Path, name: str, epochs: int, seed: int, limits: dict) -> Path:
    """The repository config with the demo's budget and run folder, saved next to the results."""
    config = json.loads(json.dumps(config))  # deep copy
    config["seed_everything"] = seed
    config["trainer"]["max_epochs"] = epochs
    for logger in config["trainer"].get("logger", []):
        logger["init_args"]["save_dir"] = str(out / name)
    config["data"]["init_args"].update({k: v for k, v in limits.items() if v is not None})
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _train_and_test(config_path: Path):
    from scarce.cli import lightning_cli

    cli = lightning_cli(["--config", str(config_path)], run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    results = cli.trainer.test(cli.model, cli.datamodule, verbose=False)
    merged = {k: float(v) for r in results for k, v in r.items()}
    return cli.model, cli.datamodule, {
        "source_test_acc": merged["test/source_acc"], "target_test_acc": merged["test/target_acc"],
        "domain_test_acc": merged.get("test/domain_acc"), "train_seconds": round(seconds, 1),
        "epochs": cli.trainer.current_epoch,
    }


def _features(model, dataset, n: int) -> torch.Tensor:
    model.eval()
    images = torch.stack([dataset[i]["image"] for i in range(min(n, len(dataset)))])
    with torch.no_grad():
        return model.embed(images)


def _save_figures(out: Path, trained: dict, datamodule, n: int = 500) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from torchvision.utils import make_grid, save_image

    source, target = datamodule.datasets["source_test"], datamodule.datasets["target_test"]
    grid = torch.cat([torch.stack([source[i]["image"] for i in range(16)]),
                      torch.stack([target[i]["image"] for i in range(16)])])
    save_image(make_grid(grid, nrow=16, padding=2, pad_value=1.0), out / "samples.png")

    fig, axes = plt.subplots(1, len(trained), figsize=(6 * len(trained), 5.5))
    for ax, (name, model) in zip(np.atleast_1d(axes), trained.items()):
        feats = torch.cat([_features(model, source, n), _features(model, target, n)]).numpy()
        domain = np.r_[np.zeros(min(n, len(source))), np.ones(min(n, len(target)))]
        reduced = PCA(n_components=min(50, feats.shape[1], len(feats) - 1), random_state=0).fit_transform(feats)
        xy = TSNE(n_components=2, init="pca", perplexity=min(30, len(feats) // 4), random_state=0).fit_transform(reduced)
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


def run_demo(out: str | Path = "runs/demo", dann_epochs: int = 10, source_only_epochs: int = 5, seed: int = 1234,
             limit_train: int | None = None, limit_eval: int | None = None, config_dir: str | Path = CONFIG_DIR,
             figures: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_dir = Path(config_dir)
    limits = {"limit_train": limit_train, "limit_eval": limit_eval}
    epochs = {"source_only": source_only_epochs, "dann": dann_epochs}
    start = time.perf_counter()
    results, trained, datamodule = {}, {}, None
    for name, filename in MODELS.items():
        source = config_dir / filename
        if not source.is_file():
            raise ScarceError(f"demo config {source} not found; pass --config-dir the folder with {sorted(MODELS.values())}")
        print(f"\n== {name}: {epochs[name]} epochs ({source})", flush=True)
        config_path = _run_config(yaml.safe_load(source.read_text()), out, name, epochs[name], seed, limits)
        model, datamodule, results[name] = _train_and_test(config_path)
        trained[name] = model
    written = _save_figures(out, trained, datamodule) if figures else []
    report = {
        "task": "MNIST -> MNIST-M", "seed": seed, "results": results,
        "total_seconds": round(time.perf_counter() - start, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": torch.get_num_threads(), "torch": torch.__version__},
        "figures": written,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    print("\n" + _table(results))
    print(f"\ntotal {report['total_seconds']:.0f} s; results, configs and figures in {out}/")
    return report


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    run_demo(args.out, args.dann_epochs, args.source_only_epochs, args.seed, args.limit_train, args.limit_eval,
             args.config_dir, figures=not args.no_figures)
    return 0
