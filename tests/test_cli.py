import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scarce._errors import ScarceError
from scarce.cli import BENCHMARKS, COMMANDS, lightning_cli, main
from scarce.packaged_configs import main as packaged_configs_main

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")
EXPERIMENT_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))
TRAINER_OVERLAYS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))
DANN_CONFIGS = ["dann_blobs", "source_only_blobs", "dann_mnist_mnistm", "source_only_mnist_mnistm"]


def test_help_lists_training_and_command_groups():
    out = subprocess.run([str(SCARCE), "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("fit|validate|test|predict", "data", "render", "bench", "pipeline", "generative"):
        assert word in out
    assert set(COMMANDS) >= {"data", "render", "bench", "demo", "configs"}
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


def test_configs_that_schedule_the_learning_rate_log_it_and_no_config_logs_hp_metric():
    for config in EXPERIMENT_CONFIGS:
        data = yaml.safe_load(config.read_text())
        tensorboard = [e for e in data["trainer"]["logger"] if e["class_path"].endswith("TensorBoardLogger")]
        assert tensorboard[0]["init_args"].get("default_hp_metric") is False, config.name
        callbacks = {e["class_path"].rsplit(".", 1)[-1] for e in data["trainer"].get("callbacks") or []}
        scheduled = data["model"]["init_args"].get("lr_scheduler") is not None
        assert ("LearningRateMonitor" in callbacks) == scheduled, config.name


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


def test_unknown_key_and_wrong_type_fail_with_one_line_naming_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/dann_blobs.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", config, "--model.init_args.adaptation_wieght=1"])
    assert "adaptation_wieght" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", config, "--model.init_args.optimizer.lr=fast"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1
    assert "--model.optimizer.lr: got 'fast', expected float" in err, err


def test_version_is_the_distribution_metadata():
    from importlib.metadata import version as distribution_version

    out = subprocess.run([str(SCARCE), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"scarce {distribution_version('scarce')}"


def test_packaged_configs_by_name_from_any_folder(tmp_path, monkeypatch):
    """`--config NAME` is the packaged config; `configs/NAME.yaml` too when the folder has no such file."""
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", "dann_blobs", "--config", "trainer/cpu", "--trainer.logger=false"], run=False)
    assert type(cli.model).__name__ == "DANN" and cli.trainer.max_epochs == 100
    cli = lightning_cli(["--config=configs/source_only_blobs.yaml", "--trainer.logger=false"], run=False)
    assert cli.model.hparams.adaptation_weight == 0
    with pytest.raises(ScarceError, match="did you mean dann_blobs"):
        lightning_cli(["--config", "dann_blob"], run=False)


def test_scarce_configs_lists_shows_and_copies(tmp_path, capsys):
    assert packaged_configs_main([]) == 0
    listing = capsys.readouterr().out
    for name in ("dann_blobs", "fcn8s_rendered", "trainer/gpu", "render/randomized"):
        assert name in listing
    assert packaged_configs_main(["show", "trainer/cpu"]) == 0
    assert capsys.readouterr().out == (REPO / "configs/trainer/cpu.yaml").read_text()

    assert packaged_configs_main(["copy", "dann_blobs", str(tmp_path / "my.yaml")]) == 0
    assert (tmp_path / "my.yaml").read_text() == (REPO / "configs/dann_blobs.yaml").read_text()
    (tmp_path / "my.yaml").write_text("edited")
    with pytest.raises(ScarceError, match="already exist"):  # nothing replaced without --force
        packaged_configs_main(["copy", "dann_blobs", str(tmp_path / "my.yaml")])
    assert (tmp_path / "my.yaml").read_text() == "edited"
    assert packaged_configs_main(["copy", "dann_blobs", str(tmp_path / "my.yaml"), "--force"]) == 0
    assert (tmp_path / "my.yaml").read_text() == (REPO / "configs/dann_blobs.yaml").read_text()
    assert packaged_configs_main(["copy", "render/randomized", str(tmp_path)]) == 0
    assert (tmp_path / "randomized.yaml").is_file()

    assert packaged_configs_main(["copy", "--all", str(tmp_path / "all")]) == 0
    copied = sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.yaml"))
    assert copied == sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml"))
    assert "trainer/gpu.yaml" in copied and "render/linemod_views.yaml" in copied


def test_top_level_optimizer_replaces_the_models_optimizer_and_keeps_its_schedule(tmp_path, monkeypatch, recwarn):
    """LightningCLI's own `--optimizer` would override configure_optimizers and drop DANN's schedule; scarce hands it
    to the model instead, and the saved config holds it under `model`, so it re-runs as it ran."""
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["fit", "--config", "dann_blobs", "--optimizer", "AdamW", "--optimizer.lr", "0.002",
                         "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"])
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer).__name__ == "AdamW" and optimizer.param_groups[0]["initial_lr"] == 0.002
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "DANNAnnealing"
    assert not [w for w in recwarn if "will be overridden" in str(w.message)]
    saved = yaml.safe_load((tmp_path / "runs/dann_blobs/csv/version_0/config.yaml").read_text())
    assert saved["model"]["init_args"]["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert saved["optimizer"] is None

    cli = lightning_cli(["--config", "dann_blobs", "--model.init_args.lr_scheduler", "null", "--trainer.logger=false"],
                        run=False)
    assert cli.model.configure_optimizers().__class__.__name__ == "SGD"  # no schedule: the bare optimizer


def _write_swa_refusal(tmp_path: Path) -> Path:
    overlay = tmp_path / "swa.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"max_epochs": 1, "logger": False, "callbacks": [
        {"class_path": "scarce.callbacks.resume.StochasticWeightAveraging", "init_args": {"swa_lrs": 0.01}}]}}))
    return overlay


USER_ERRORS = {
    "unknown config": (["--config", "dann_blob"], "did you mean dann_blobs"),
    "bad yaml": (["--config", "{bad.yaml}"], "Problems parsing config"),
    "missing checkpoint": (["--config", "dann_blobs", "--ckpt_path", "{none.ckpt}"], "Checkpoint file not found"),
    "class_path typo": (["--config", "dann_blobs", "--model.class_path", "scarce.lightning_modules.dann.DANNN"],
                        "--model: cannot import it: module 'scarce.lightning_modules.dann' has no attribute 'DANNN'"),
    "error in a module's __init__": (["--config", "fcn8s_cityscapes", "--model.init_args.class_weights", "[1.0, 2.0]"],
                                     "model.class_weights has 2 values, num_classes is 19"),
    "SWA over a schedule": (["--config", "dann_blobs", "--config", "{swa.yaml}"],
                            "would replace the model's learning-rate schedule (DANNAnnealing) with SWALR"),
    "GAN with --optimizer": (["--config", "gan_mnist", "--optimizer", "Adam"], "takes no optimizer argument"),
}


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_errors_of_fit_are_one_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("trainer: [\n  max_epochs: 1\n")
    _write_swa_refusal(tmp_path)
    args, message = USER_ERRORS[case]
    args = [str(tmp_path / a[1:-1]) if a.startswith("{") else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args, "--trainer.enable_progress_bar=false"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("scarce fit: error:")]
    assert exc.value.code == 1 and len(errors) == 1 and message in errors[0], err[-3000:]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCARCE_DEBUG", "0")  # off; and restored after the test, since --debug sets it to 1
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found"):
        main(["--debug", "fit", "--config", "dann_blobs", "--ckpt_path", str(tmp_path / "none.ckpt"),
              "--trainer.logger=false"])


def test_render_print_config_round_trips(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["render", "--preset", "randomized", "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    (tmp_path / "mine.yaml").write_text(printed)
    for source in (["--config", str(tmp_path / "mine.yaml")], ["--config", "render/randomized"]):
        with pytest.raises(SystemExit):
            main(["render", *source, "--print_config"])
        assert capsys.readouterr().out == printed


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


def test_fit_help_lists_scarces_classes_as_known_subclasses(capsys):
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "--help"])
    assert exc.value.code == 0
    out = "".join(capsys.readouterr().out.split())  # the help text wraps long names anywhere
    for name in ("scarce.lightning_modules.dann.DANN", "scarce.lightning_modules.segmentation.Segmentation",
                 "scarce.datamodules.domain_adaptation.BlobsDataModule", "scarce.callbacks.resume.ResumeCheckpoint"):
        assert name in out, name
