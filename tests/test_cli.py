import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scarce.cli import BENCHMARKS, COMMANDS, lightning_cli, main

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")
EXPERIMENT_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))
TRAINER_OVERLAYS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
DANN_CONFIGS = ["dann_blobs", "source_only_blobs", "dann_mnist_mnistm", "source_only_mnist_mnistm"]


def test_help_lists_training_and_command_groups():
    out = subprocess.run([str(SCARCE), "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("fit|validate|test|predict", "data", "render", "bench", "pipeline", "generative"):
        assert word in out
    assert set(COMMANDS) >= {"data", "render", "bench", "demo"}
    assert set(BENCHMARKS) >= {"pipeline", "render", "generative"}


def test_every_registered_command_resolves_to_a_function():
    import importlib

    for name, (target, _) in {**COMMANDS, **BENCHMARKS}.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), f"{name} -> {target}"


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("config", EXPERIMENT_CONFIGS, ids=lambda p: p.stem)
def test_every_experiment_config_parses(config, tmp_path, monkeypatch):
    """Each YAML under configs/ instantiates its model, data module and trainer (no training)."""
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", str(config), "--trainer.logger=false"], run=False)
    assert cli.model is not None and cli.datamodule is not None


@pytest.mark.parametrize("overlay", TRAINER_OVERLAYS, ids=lambda p: p.stem)
def test_trainer_overlays_compose(overlay, tmp_path, monkeypatch):
    if overlay.stem == "gpu":
        pytest.skip("needs a GPU to instantiate; parsed by the gpu-marked tests")
    monkeypatch.chdir(tmp_path)
    overrides = ["--trainer.devices=2", "--trainer.accelerator=cpu"] if overlay.stem == "ddp" else []
    cli = lightning_cli(["--config", str(REPO / "configs/dann_blobs.yaml"), "--config", str(overlay), *overrides], run=False)
    expected = yaml.safe_load(overlay.read_text())["trainer"]
    if "precision" in expected:
        assert str(cli.trainer.precision) == expected["precision"]


def test_every_config_logs_to_csv_and_tensorboard():
    for config in EXPERIMENT_CONFIGS:
        loggers = yaml.safe_load(config.read_text())["trainer"].get("logger") or []
        kinds = {entry["class_path"].rsplit(".", 1)[-1] for entry in loggers}
        assert {"CSVLogger", "TensorBoardLogger"} <= kinds, f"{config.name} logs to {kinds}"


QUICK = {
    "dann_blobs": ["--trainer.max_epochs=1", "--trainer.log_every_n_steps=5", "--trainer.check_val_every_n_epoch=1"],
    "source_only_blobs": ["--trainer.max_epochs=1", "--trainer.log_every_n_steps=5", "--trainer.check_val_every_n_epoch=1"],
    "dann_mnist_mnistm": ["--trainer.max_epochs=1", "--trainer.log_every_n_steps=2", "--data.init_args.limit_train=64",
                          "--data.init_args.limit_eval=32", "--data.init_args.batch_size=16"],
}
QUICK["source_only_mnist_mnistm"] = QUICK["dann_mnist_mnistm"]


@pytest.mark.parametrize("name", DANN_CONFIGS)
def test_short_fit_twice_in_the_same_folder(name, tmp_path, monkeypatch):
    """`scarce fit` end to end, twice: the second run must not trip over the first run's config.yaml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCARCE_CACHE", str(tmp_path / "cache"))
    args = ["fit", "--config", str(REPO / f"configs/{name}.yaml"), "--trainer.enable_progress_bar=false", *QUICK[name]]
    for _ in range(2):
        main(args)
    metrics = (tmp_path / "runs" / name / "csv" / "version_1" / "metrics.csv").read_text().splitlines()[0]
    for key in ("val/source_acc", "val/target_acc", "val/domain_acc", "train/cls_loss"):
        assert key in metrics
    assert list((tmp_path / "runs" / name / "tensorboard").glob("version_*/events.out.tfevents.*"))


def test_unknown_key_and_wrong_type_fail_with_lightningcli_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/dann_blobs.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", config, "--model.init_args.adaptation_wieght=1"])
    assert "adaptation_wieght" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--config", config, "--model.init_args.lr=fast"])
    assert "lr" in capsys.readouterr().err


def test_missing_mnist_root_shows_the_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = subprocess.run(
        [str(SCARCE), "validate", "--config", str(REPO / "configs/dann_mnist_mnistm.yaml"),
         f"--data.init_args.mnist_root={tmp_path / 'nowhere'}", "--data.init_args.cache_dir", str(tmp_path / "c")],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode != 0
    assert "train-images-idx3-ubyte" in result.stderr and "nowhere" in result.stderr


def test_ddp_two_cpu_processes(tmp_path):
    """DDP with gloo, 2 processes, a few steps; metrics are computed over both ranks' samples."""
    result = subprocess.run(
        [str(SCARCE), "fit", "--config", str(REPO / "configs/dann_blobs.yaml"),
         "--config", str(REPO / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2",
         "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.enable_progress_bar=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert "All distributed processes registered" in result.stderr + result.stdout
    metrics = (tmp_path / "runs/dann_blobs/csv/version_0/metrics.csv").read_text()
    assert "val/target_acc" in metrics
