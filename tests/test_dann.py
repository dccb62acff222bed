import subprocess
import sys
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from scarce.datamodules.domain_adaptation import BlobsDataModule, DigitsDataModule, Unlabelled
from scarce.data.datasets import Blobs
from scarce.lightning_modules.dann import DANN
from scarce.nets.dann import DANN_NETWORKS, create_dann_network
from scarce._errors import ScarceError
from scarce.cli import lightning_cli

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")


@pytest.mark.parametrize("name, shape", [("digits", (4, 3, 28, 28)), ("blobs", (4, 3))])
def test_networks_forward_backward(name, shape):
    net = DANN_NETWORKS[name]()
    logits, feats = net(torch.randn(shape))
    loss = logits.sum() + net.domain_logits(feats, 0.5).sum()
    loss.backward()
    for n, p in net.named_parameters():
        assert p.grad is not None, f"no gradient for {n}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {n}"


def test_unknown_network_names_the_valid_values():
    with pytest.raises(ValueError, match="blobs.*digits"):
        create_dann_network("resnet")


def _batch(seed: int, target_shift: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    return {"source": {"image": torch.randn(8, 3, 28, 28, generator=g), "label": torch.randint(0, 10, (8,), generator=g)},
            "target": {"image": torch.randn(8, 3, 28, 28, generator=g) + target_shift}}


def _bn_stats(model):
    return [m.running_mean.clone() for m in model.net.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("adaptation_weight, target_changes_bn", [(0.0, False), (1.0, True)])
def test_source_only_keeps_batchnorm_statistics_source_only(adaptation_weight, target_changes_bn):
    stats = []
    for shift in (0.0, 50.0):
        torch.manual_seed(0)
        model = DANN(network="digits", adaptation_weight=adaptation_weight)
        model.train()
        batch = _batch(0, shift)
        logits, domain_logits, _ = model.adversarial_step(batch["source"]["image"], batch["target"]["image"], 1.0)
        assert logits.shape == (8, 10) and domain_logits.shape == (16, 2)
        stats.append(_bn_stats(model))
    same = all(torch.equal(a, b) for a, b in zip(*stats))
    assert same != target_changes_bn


@pytest.mark.parametrize("batch_norm_stats, target_moves_source", [("per_domain", False), ("joint", True)])
def test_per_domain_batch_norm_normalises_source_with_source_statistics(batch_norm_stats, target_moves_source):
    source_logits = []
    for shift in (0.0, 50.0):
        torch.manual_seed(0)
        model = DANN(network="digits", adaptation_weight=1.0, batch_norm_stats=batch_norm_stats)
        model.train()
        batch = _batch(0, shift)
        logits, domain_logits, _ = model.adversarial_step(batch["source"]["image"], batch["target"]["image"], 1.0)
        source_logits.append(torch.cat([logits, domain_logits[:8]], 1).detach())
    moved = not torch.allclose(*source_logits, atol=1e-5)
    assert moved == target_moves_source


@pytest.mark.parametrize("option, value, choices", [("batch_norm_stats", "shared", ("per_domain", "joint")),
                                                    ("network", "resnet", ("digits", "blobs")),
                                                    ("lambda_schedule", "cosine", ("dann", "constant"))])
def test_cli_rejects_an_unknown_choice_and_lists_the_valid_ones(option, value, choices, capsys):
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "--config", str(REPO / "configs/dann_blobs.yaml"), f"--model.init_args.{option}", value,
                       "--print_config"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert value in err and all(c in err for c in choices), err[-2000:]


def test_cli_rejects_a_negative_adaptation_weight(capsys):
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "--config", str(REPO / "configs/dann_blobs.yaml"),
                       "--model.init_args.adaptation_weight", "-1", "--print_config"])
    assert exc.value.code != 0 and "adaptation_weight" in capsys.readouterr().err


def test_model_help_by_short_name_lists_the_choices_and_the_injected_defaults():
    out = subprocess.run([str(SCARCE), "fit", "--model.help", "DANN"], capture_output=True, text=True,
                         check=True).stdout
    for choice in ("per_domain", "joint", "digits", "blobs", "torch.optim.SGD", "scarce.schedules.DANNAnnealing"):
        assert choice in out, out


def test_unpaired_batches_name_the_fix():
    model = DANN(network="blobs", num_classes=2)
    with pytest.raises(ScarceError, match="paired"):
        model.training_step({"image": torch.randn(4, 3), "label": torch.zeros(4, dtype=torch.long)}, 0)


def test_unlabelled_view_drops_labels():
    view = Unlabelled(Blobs("target", "train"))
    assert set(view[0]) == {"image"} and len(view) == 400


@pytest.mark.parametrize("adaptation_weight", [0.0, 1.0])
def test_dann_blobs_trains_and_logs_the_contract_metrics(tmp_path, adaptation_weight):
    L.seed_everything(0)
    model = DANN(network="blobs", num_classes=2, optimizer=partial(torch.optim.Adam, lr=0.01), lr_scheduler=None,
                 adaptation_weight=adaptation_weight)
    dm = BlobsDataModule(seed=0, batch_size=32)
    trainer = L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/cls_loss", "train/domain_loss", "train/lambda", "train/source_acc",
                "val/source_acc", "val/target_acc", "val/domain_acc"):
        assert key in metrics, key
    if adaptation_weight == 0:
        # Source-only learns the easy source problem, and its domain probe separates the shifted domains.
        assert metrics["val/source_acc"] > 0.95
        assert metrics["val/domain_acc"] > 0.9, metrics["val/domain_acc"]
        assert metrics["train/lambda"] == 0
    results = trainer.test(model, dm, verbose=False)
    keys = set().union(*results)
    assert {"test/source_acc", "test/target_acc", "test/domain_acc"} <= keys


@pytest.mark.parametrize("log_every_n_steps", [0, 2])
def test_training_logs_on_the_trainers_logging_steps_and_the_last(tmp_path, log_every_n_steps):
    L.seed_everything(0)
    model = DANN(network="blobs", num_classes=2, optimizer=partial(torch.optim.Adam, lr=0.01), lr_scheduler=None)
    trainer = L.Trainer(max_steps=5, limit_val_batches=0, log_every_n_steps=log_every_n_steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, BlobsDataModule(seed=0, batch_size=32))
    # The last step logs whatever the interval (0 means Lightning writes no step logs of its own).
    assert "train/loss" in trainer.callback_metrics and "train/source_acc" in trainer.callback_metrics


def test_digits_datamodule_batches(tmp_path):
    dm = DigitsDataModule(limit_train=32, limit_eval=16, batch_size=8, cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert batch["source"]["image"].shape == (8, 3, 28, 28) and batch["source"]["label"].shape == (8,)
    assert set(batch["target"]) == {"image"} and batch["target"]["image"].shape == (8, 3, 28, 28)
    # Grey MNIST repeated into 3 identical channels; MNIST-M in colour.
    src = batch["source"]["image"]
    assert torch.equal(src[:, 0], src[:, 1])
    source_val, target_val = dm.val_dataloader()
    assert len(source_val.dataset) == 16 and len(target_val.dataset) == 16


def test_channels_last_computes_the_same_steps_in_the_nhwc_layout():
    """`channels_last: true` (the MNIST configs) changes the memory layout only: same losses and weights after 3
    SGD steps, up to float rounding; the layout survives loading a checkpoint's weights."""
    weights, losses = [], []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = DANN(network="digits", adaptation_weight=1.0, channels_last=channels_last)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for step in range(3):
            source, target = model.paired_batch(_batch(step, 0.5))
            assert source["image"].is_contiguous(memory_format=torch.channels_last) == channels_last
            out = model.adversarial_step(source["image"], target["image"], 0.5)
            loss = (torch.nn.functional.cross_entropy(out.logits, source["label"])
                    + torch.nn.functional.cross_entropy(out.domain_logits, out.domain_labels))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    assert losses[:3] == pytest.approx(losses[3:], rel=1e-4)
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=1e-4, atol=1e-5, msg=key)
    fresh = DANN(network="digits", channels_last=True)
    fresh.load_state_dict(weights[0])  # written by an NCHW model
    assert fresh.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_swa_averages_the_weights_and_keeps_the_dann_schedule(tmp_path, monkeypatch):
    """The blobs configs' SWA (swa_lrs null) averages the weights of the last epochs while the DANN annealing runs
    to the end: every step's learning rate is the paper's, none is SWALR's."""
    from scarce.callbacks.resume import StochasticWeightAveraging
    from scarce.schedules import dann_lr_factor

    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["fit", "--config", "dann_blobs", "--trainer.max_epochs", "4",
                         "--trainer.log_every_n_steps", "1", "--trainer.check_val_every_n_epoch", "1", "--trainer.enable_progress_bar", "false",
                         "--trainer.callbacks+=scarce.callbacks.learning_rate.LearningRateMonitor"])
    swa = next(c for c in cli.trainer.callbacks if isinstance(c, StochasticWeightAveraging))
    assert swa.keeps_model_schedule and int(swa.n_averaged) == 3  # epochs 2-4 of 4: swa_epoch_start int(0.7 * 4)
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "DANNAnnealing"
    rows = [line.split(",") for line in next((tmp_path / "runs/dann_blobs/csv").glob("version_*/metrics.csv"))
            .read_text().splitlines()]
    column, step = rows[0].index("lr-SGD"), rows[0].index("step")
    rates = {int(r[step]): float(r[column]) for r in rows[1:] if r[column]}
    total = cli.trainer.estimated_stepping_batches
    assert max(rates) > 0.75 * total  # logged inside the averaged epochs too
    for s, lr in rates.items():
        assert lr == pytest.approx(0.01 * dann_lr_factor(s / total), rel=1e-6), s


def test_a_module_built_in_python_keeps_its_optimizer_as_plain_data(tmp_path):
    """A callable passed in Python is stored in hparams as {class_path, init_args}: the checkpoint loads with
    weights_only=True and rebuilds the same optimizer."""
    model = DANN(network="blobs", num_classes=2, optimizer=partial(torch.optim.Adam, lr=0.02), lr_scheduler=None)
    assert model.hparams.optimizer == {"class_path": "torch.optim.adam.Adam", "init_args": {"lr": 0.02}}
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, BlobsDataModule(seed=0, batch_size=32))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    torch.load(tmp_path / "m.ckpt", weights_only=True)
    restored = DANN.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    optimizer = restored.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["lr"] == 0.02


def test_a_network_by_class_path_with_its_init_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", "dann_mnist_mnistm", "--model.init_args.network", "BlobsDANN",
                         "--model.init_args.network.init_args.hidden", "8", "--model.init_args.num_classes", "3",
                         "--trainer.logger=false"], run=False)
    assert type(cli.model.net).__name__ == "BlobsDANN"
    logits, features = cli.model.net(torch.randn(5, 3))
    assert logits.shape == (5, 3) and features.shape == (5, 8)
