"""DANN for segmentation (book 7.6): domain heads, gradient reversal under bf16 autocast, the source-only probe,
logged metrics, `scarce fit` of both configs (tiny), and DDP with two CPU processes."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from _configs import experiment
from _segmentation_data import make_cityscapes, make_synthia
from scarce._errors import ScarceError
from scarce.cli import lightning_cli
from scarce.lightning_modules.dann_segmentation import DANNSegmentation
from scarce.nets.domain_heads import OutputDomainDiscriminator, Pool5DomainClassifier, create_domain_head
from scarce.schedules import dann_lambda

REPO = Path(__file__).resolve().parents[1]
SCARCE = Path(sys.executable).with_name("scarce")
PLACEMENTS = ("pool5", "output")
# Tiny sizes for every `scarce fit` here: 1/16 of FCN-8s' channels, 2 steps, 1 validation batch per domain.
TINY = ["--model.init_args.width_divisor", "16", "--data.init_args.num_workers", "0",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"]
CONTRACT = {"train/loss", "train/seg_loss", "train/domain_loss", "train/domain_acc", "train/lambda",
            "val/source_miou", "val/target_miou", "val/miou_gap", "val/domain_acc"}


def _model(placement: str, **kwargs) -> DANNSegmentation:
    torch.manual_seed(0)
    return DANNSegmentation(placement=placement, num_classes=3, width_divisor=16, **kwargs)


def _images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _metrics(run_dir: Path) -> set[str]:
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    assert files, f"no metrics.csv under {run_dir}"
    with open(files[-1]) as f:
        return set(next(csv.reader(f)))


# ------------------------------------------------------------------------------------------------ domain heads


def test_domain_heads_shapes_and_gradients():
    pool5 = Pool5DomainClassifier(32)
    # Global max pooling: any pool5 size gives one prediction per image.
    for h, w in ((1, 1), (3, 5)):
        assert pool5(torch.randn(2, 32, h, w)).shape == (2, 2)
    full = OutputDomainDiscriminator(7, width=8)
    assert full(torch.rand(2, 7, 16, 20)).shape == (2, 2, 16, 20)
    strided = OutputDomainDiscriminator(7, width=8, num_layers=3, num_downsamples=2)
    assert strided(torch.rand(2, 7, 16, 20)).shape == (2, 2, 4, 5)
    for head, x in ((pool5, torch.randn(3, 32, 2, 2)), (full, torch.rand(3, 7, 8, 8))):
        head(x).sum().backward()
        for name, p in head.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match="num_downsamples"):
        OutputDomainDiscriminator(7, num_layers=2, num_downsamples=3)
    with pytest.raises(ValueError, match="pool5"):
        create_domain_head("fc7")


@pytest.mark.parametrize("option, value, expected", [("placement", "fc7", "pool5"),
                                                     ("reversed_domains", "source", "target"),
                                                     ("adaptation_weight", "-1", "adaptation_weight"),
                                                     ("discriminator_layers", "0", "discriminator_layers")])
def test_the_cli_rejects_bad_values_by_type(option, value, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        lightning_cli(["fit", "--config", str(REPO / "configs/dann_fcn8s_rendered.yaml"),
                       f"--model.init_args.{option}", value, "--print_config"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert value in err and expected in err, err[-2000:]


def test_bad_hyperparameters_name_the_option():
    with pytest.raises(ScarceError, match="discriminator_downsamples"):
        _model("output", discriminator_layers=2, discriminator_downsamples=3)
    with pytest.raises(ScarceError, match="paired_target"):
        _model("pool5").training_step({"image": _images(0), "mask": torch.zeros(2, 32, 32, dtype=torch.long)}, 0)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_adversarial_forward_shapes(placement):
    model = _model(placement)
    logits, domain_logits, labels = model.adversarial_step(_images(0, 2), _images(1, 3), 1.0)
    assert logits.shape == (2, 3, 32, 32)
    expected = (5, 2) if placement == "pool5" else (5, 2, 32, 32)
    assert domain_logits.shape == expected and labels.shape == expected[:1] + expected[2:]
    assert (labels[:2] == 0).all() and (labels[2:] == 1).all()


@pytest.mark.parametrize("stats", ["per_domain", "joint"])
def test_batch_norm_stats_per_domain_normalises_each_domain_alone(stats):
    """With the vgg16_bn backbone, per_domain gives the source the logits of a source-only pass in training mode."""
    torch.manual_seed(0)
    model = _model("output", batch_norm=True, batch_norm_stats=stats).train()
    model.net.fc6[2].p = model.net.fc7[2].p = 0.0  # no dropout: compare the passes exactly
    x_s, x_t = _images(0, 2), _images(1, 2) * 0.2 + 0.7  # a target with other statistics
    logits, _, _ = model.adversarial_step(x_s, x_t, 1.0)
    alone = model.net(x_s)
    assert torch.allclose(logits, alone, atol=1e-5) == (stats == "per_domain")


# ------------------------------------------------------------------------------------------------ gradients


def _backbone_and_head_grads(model: DANNSegmentation, coeff: float) -> tuple[list, list, torch.dtype]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, domain_logits, labels = model.adversarial_step(_images(0), _images(1), coeff)
        loss = F.cross_entropy(domain_logits.float(), labels)
    loss.backward()
    backbone = [p.grad.clone() for p in model.net.features.parameters()]
    head = [p.grad.clone() for p in model.domain_head.parameters()]
    return backbone, head, domain_logits.dtype


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_grl_under_bf16_autocast_gives_the_reversed_gradient_in_float32(placement):
    model = _model(placement, adaptation_weight=1.0)
    model.eval()  # no dropout: both passes see the same network
    # coeff -1 turns the reversal into the identity: the plain gradient of the domain loss.
    plain, head_plain, dtype = _backbone_and_head_grads(model, -1.0)
    reversed_, head_reversed, _ = _backbone_and_head_grads(model, 0.5)
    assert dtype == torch.bfloat16, "autocast did not run the domain head in bf16"
    assert any(g.abs().sum() > 0 for g in plain), "no domain gradient reached the backbone"
    for g_plain, g_rev in zip(plain, reversed_):
        assert g_rev.dtype == torch.float32
        # x 0.5 and negation are exact in bf16, so the reversed gradient is exactly -0.5 x the plain one.
        torch.testing.assert_close(g_rev, -0.5 * g_plain, rtol=1e-6, atol=1e-12)
    # The domain head itself is not behind the reversal: it descends its loss at full rate either way.
    for g_plain, g_rev in zip(head_plain, head_reversed):
        assert g_rev.dtype == torch.float32
        torch.testing.assert_close(g_rev, g_plain)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_source_only_probe_leaves_the_network_to_the_segmentation_loss(placement):
    """adaptation_weight 0: the domain loss trains the head only, and target images do not touch the network."""
    grads = {}
    for name, weight, target_seed in (("probe", 0.0, 1), ("probe_other_target", 0.0, 2), ("dann", 1.0, 1)):
        model = _model(placement, adaptation_weight=weight)
        model.train()
        mask = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(3))
        torch.manual_seed(5)  # the same dropout masks on the source path
        logits, domain_logits, labels = model.adversarial_step(_images(0), _images(target_seed), 1.0)
        assert model.net.training, "the probe must restore training mode"
        (model.loss(logits, mask) + F.cross_entropy(domain_logits, labels)).backward()
        grads[name] = [p.grad.clone() for p in model.net.parameters() if p.grad is not None]
        assert all(p.grad is not None for p in model.domain_head.parameters())
        if name == "probe":
            model.zero_grad()
            torch.manual_seed(5)
            logits = model.net(_images(0))
            model.loss(logits, mask).backward()
            seg_only = [p.grad.clone() for p in model.net.parameters() if p.grad is not None]
            for a, b in zip(grads["probe"], seg_only):
                torch.testing.assert_close(a, b)
    for a, b in zip(grads["probe"], grads["probe_other_target"]):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(grads["probe"], grads["dann"])), \
        "adapting: the domain loss must reach the network"


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_reversed_domains_target_pushes_only_the_target_images(placement):
    """reversed_domains: target: the domain loss reaches the network only through the target images (the source
    images get no domain gradient), while the head still learns from both domains; with both, both do."""
    for reversed_domains in ("both", "target"):
        model = _model(placement, reversed_domains=reversed_domains)
        model.eval()  # no dropout
        x_s, x_t = _images(0).requires_grad_(), _images(1).requires_grad_()
        _, domain_logits, labels = model.adversarial_step(x_s, x_t, 1.0)
        F.cross_entropy(domain_logits, labels).backward()
        assert x_t.grad.abs().sum() > 0
        source_grad = 0.0 if x_s.grad is None else float(x_s.grad.abs().sum())
        assert (source_grad > 0) == (reversed_domains == "both"), reversed_domains
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.domain_head.parameters())


# ------------------------------------------------------------------------------------------------ configs


DANN_ONLY = {"batch_norm_stats", "placement", "adaptation_weight", "lambda_schedule", "lambda_gamma", "domain_loss_weight", "domain_dropout",
             "discriminator_width", "discriminator_layers", "discriminator_downsamples", "reversed_domains"}


@pytest.mark.parametrize("source_only, dann", [("fcn8s_rendered", "dann_fcn8s_rendered"),
                                               ("fcn8s_synthia_to_cityscapes", "dann_fcn8s_synthia_to_cityscapes")])
def test_dann_configs_keep_the_source_only_budget(source_only, dann):
    """Same seed, trainer, data and segmentation hyperparameters as the source-only config: a fair comparison."""
    base, adv = experiment(source_only), experiment(dann)
    assert adv["seed_everything"] == base["seed_everything"]
    assert adv["trainer"] == base["trainer"]
    assert adv["model"]["class_path"] == "scarce.lightning_modules.dann_segmentation.DANNSegmentation"
    assert {k: v for k, v in adv["model"]["init_args"].items() if k not in DANN_ONLY} == base["model"]["init_args"]
    assert adv["data"]["init_args"].pop("paired_target") is True
    assert adv["data"] == base["data"]


METHODS = ("minent", "advent", "fda", "self_training")


@pytest.mark.parametrize("pair", ["rendered", "synthia_to_cityscapes"])
@pytest.mark.parametrize("method", METHODS)
def test_method_configs_keep_the_dann_budget(method, pair):
    """Every adaptation config is a copy of the DANN config of its pair: same seed, trainer (steps, validation,
    callbacks), data (scenes, size, batch, pairing; FDA adds only fda_beta) and segmentation network and optimiser;
    only the method's own options differ. A budget change must reach all of them."""
    import inspect

    from scarce.lightning_modules.segmentation import Segmentation

    base, other = experiment(f"dann_fcn8s_{pair}"), experiment(f"{method}_fcn8s_{pair}")
    assert other["seed_everything"] == base["seed_everything"]
    assert other["trainer"] == base["trainer"]
    fda_beta = other["data"]["init_args"].pop("fda_beta", None)
    assert (fda_beta is not None) == (method == "fda")
    assert other["data"] == base["data"]
    shared = set(inspect.signature(Segmentation).parameters)
    assert {k: v for k, v in other["model"]["init_args"].items() if k in shared} == \
        {k: v for k, v in base["model"]["init_args"].items() if k in shared}


def test_scarce_fit_synthia_to_cityscapes_dann_config_bf16(tmp_path, monkeypatch):
    """Both domains on tiny trees in their real layouts, under bf16-mixed; every contract metric is logged."""
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    make_synthia(tmp_path / "syn")
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["fit", "--config", str(REPO / "configs/dann_fcn8s_synthia_to_cityscapes.yaml"),
                         "--config", str(REPO / "configs/trainer/bf16.yaml"), "--trainer.accelerator", "cpu",
                         "--data.init_args.source.root", str(tmp_path / "syn"),
                         "--data.init_args.target.root", str(tmp_path / "cs"), "--data.init_args.size", "[32, 32]",
                         "--data.init_args.batch_size", "2", "--trainer.num_sanity_val_steps", "0", *TINY])
    assert CONTRACT <= _metrics(tmp_path / "runs/dann_fcn8s_synthia_to_cityscapes")
    metrics = cli.trainer.callback_metrics
    # The logged lambda is the ramp at the last step: step 1 of 2, progress 0.5.
    expected = cli.model.hparams.adaptation_weight * dann_lambda(0.5)
    assert metrics["train/lambda"].item() == pytest.approx(expected, rel=1e-5)
    assert 0.0 <= metrics["val/domain_acc"].item() <= 1.0
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_scarce_fit_rendered_dann_config(tmp_path):
    """The embedded config as committed (output-space discriminator, strided)."""
    # In a child process: rendering creates a GL context, which must not live in the pytest process that forks.
    env = dict(os.environ, PYOPENGL_PLATFORM="egl")
    cmd = [str(SCARCE), "fit", "--config", str(REPO / "configs/dann_fcn8s_rendered.yaml"),
           "--data.init_args.batch_size", "2",
           "--trainer.val_check_interval", "2", "--data.init_args.source.num_train", "4",
           "--data.init_args.target.num_train", "4", "--data.init_args.source.num_val", "2",
           "--data.init_args.target.num_val", "2", "--data.init_args.size", "[32, 32]", *TINY]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert CONTRACT <= _metrics(tmp_path / "runs/dann_fcn8s_rendered")
    assert "realism gap: source mIoU" in proc.stdout + proc.stderr


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_ddp_two_cpu_processes(tmp_path, placement):
    """strategy=ddp on gloo, 2 processes, 2 steps of DANN; validation metrics synced over ranks."""
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    make_synthia(tmp_path / "syn")
    cmd = [str(SCARCE), "fit", "--config", str(REPO / "configs/dann_fcn8s_synthia_to_cityscapes.yaml"),
           "--config", str(REPO / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2",
           "--data.init_args.source.root", str(tmp_path / "syn"), "--data.init_args.target.root", str(tmp_path / "cs"),
           "--data.init_args.size", "[32, 32]", "--data.init_args.batch_size", "1",
           "--trainer.num_sanity_val_steps", "0", f"--model.init_args.placement={placement}",
           "--model.init_args.discriminator_downsamples=2", *TINY]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "distributed_backend=gloo" in out and "All distributed processes registered" in out
    assert CONTRACT <= _metrics(tmp_path / "runs/dann_fcn8s_synthia_to_cityscapes")
