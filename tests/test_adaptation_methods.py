"""The adaptation methods after DANN on the one adversarial core (issue 13): MinEnt and AdvEnt (``DANNSegmentation``'s
``placement: entropy`` and ``entropy_weight``), FDA in ``SegmentationDataModule`` (``fda_beta``), CBST self-training
(``SelfTraining``); a short ``scarce fit`` of each of their configs; their one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from _segmentation_data import make_cityscapes, make_synthia
from scarce._errors import ScarceError
from scarce.adaptation import ConfidenceHistogram, entropy_loss, self_information
from scarce.cli import lightning_cli, main
from scarce.datamodules.segmentation import SegmentationDataModule, SegmentationSource
from scarce.lightning_modules.dann_segmentation import DANNSegmentation
from scarce.lightning_modules.segmentation import Segmentation
from scarce.lightning_modules.self_training import SelfTraining
from scarce.schedules import dann_lambda
from test_dann_segmentation import TINY, _metrics

REPO = Path(__file__).resolve().parents[1]
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
             accelerator="cpu")


def _images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _dann(**kwargs) -> DANNSegmentation:
    torch.manual_seed(0)
    return DANNSegmentation(placement="entropy", num_classes=3, width_divisor=16, discriminator_width=8, **kwargs)


def _paired_loader(n: int = 4, size: int = 32, num_classes: int = 3) -> CombinedLoader:
    """In-memory paired batches of 2 + 2 images: random source images and masks, random target images."""
    g = torch.Generator().manual_seed(0)
    source = [{"image": torch.rand(3, size, size, generator=g),
               "mask": torch.randint(0, num_classes, (size, size), generator=g)} for _ in range(n)]
    target = [{"image": torch.rand(3, size, size, generator=g)} for _ in range(n)]
    return CombinedLoader({"source": DataLoader(source, batch_size=2), "target": DataLoader(target, batch_size=2)},
                          mode="max_size_cycle")


# ------------------------------------------------------------------------------------------------ MinEnt


def test_minent_gradient_reaches_the_network_through_the_target_only_by_the_entropy():
    """MinEnt alone (adaptation_weight 0, entropy_weight > 0): the target goes through the network with gradient, the
    entropy of its predictions reaches the network, and the domain head stays a probe on detached maps."""
    model = _dann(adaptation_weight=0.0, entropy_weight=0.5)
    model.eval()  # no dropout: the same network for every pass
    x_s, x_t = _images(0), _images(1).requires_grad_()
    out = model.adversarial_step(x_s, x_t, 0.0)
    assert out.logits.shape == (4, 3, 32, 32)  # source rows, then target rows
    target_logits = out.logits[2:]
    torch.testing.assert_close(target_logits, model.net(x_t))
    # The domain loss trains the head only (probe): no gradient reaches the network or the target images.
    F.cross_entropy(out.domain_logits, out.domain_labels).backward(retain_graph=True)
    assert x_t.grad is None and all(p.grad is None for p in model.net.parameters())
    assert all(p.grad is not None for p in model.domain_head.parameters())
    model.domain_head.zero_grad(set_to_none=True)
    # The entropy loss reaches the network through the target, and nothing of the head.
    entropy_loss(target_logits).backward()
    assert x_t.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.features.parameters())
    assert all(p.grad is None for p in model.domain_head.parameters())
    # Without MinEnt the pass leaves the target logits out (the probe runs the target without gradient).
    assert _dann(adaptation_weight=0.0).adversarial_step(x_s, x_t, 0.0).logits.shape[0] == 2


def test_minent_training_step_adds_the_ramped_entropy_term_and_logs_it():
    model = _dann(adaptation_weight=0.0, entropy_weight=0.5)
    trainer = Trainer(max_steps=2, log_every_n_steps=1, **QUIET)
    trainer.fit(model, train_dataloaders=_paired_loader())
    metrics = trainer.callback_metrics
    # Logged at the last step (step 1 of 2, progress 0.5): the weight is entropy_weight times the DANN ramp.
    assert metrics["train/entropy_loss_weight"].item() == pytest.approx(0.5 * dann_lambda(0.5), rel=1e-5)
    assert 0.0 < metrics["train/entropy_loss"].item() <= 1.0
    expected = metrics["train/seg_loss"] + metrics["train/domain_loss"] + \
        metrics["train/entropy_loss_weight"] * metrics["train/entropy_loss"]
    torch.testing.assert_close(metrics["train/loss"], expected)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ AdvEnt


def test_advent_head_sees_self_information_maps_and_pushes_the_target_only():
    model = _dann(adaptation_weight=1.0, reversed_domains="target")
    model.eval()
    seen = []
    model.domain_head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    x_s, x_t = _images(0).requires_grad_(), _images(1).requires_grad_()
    out = model.adversarial_step(x_s, x_t, 1.0)
    with torch.no_grad():
        expected = self_information(model.net(torch.cat([x_s, x_t])))
    torch.testing.assert_close(seen[0], expected)
    assert out.domain_logits.shape == (4, 2, 32, 32)
    F.cross_entropy(out.domain_logits, out.domain_labels).backward()
    # The reversed gradient reaches the network through the target's maps only (one joint batch: zeros for the source).
    assert x_t.grad.abs().sum() > 0 and (x_s.grad is None or not x_s.grad.any())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.domain_head.parameters())
    with pytest.raises(ScarceError, match="discriminator_downsamples"):
        _dann(discriminator_layers=1, discriminator_downsamples=2)


def _data(tmp_path: Path, **kwargs) -> SegmentationDataModule:
    """SYNTHIA -> Cityscapes on tiny trees, 32x32, batches of 2, no augmentation."""
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    make_synthia(tmp_path / "syn")
    return SegmentationDataModule(SegmentationSource(kind="synthia", root=str(tmp_path / "syn")),
                                  SegmentationSource(kind="cityscapes", root=str(tmp_path / "cs")),
                                  size=(32, 32), batch_size=2, augment=False, **kwargs)


def test_advent_validation_reports_the_domain_accuracy_on_entropy_maps(tmp_path):
    data = _data(tmp_path, paired_target=True)
    model = DANNSegmentation(placement="entropy", width_divisor=16, discriminator_width=8, entropy_weight=0.1)
    trainer = Trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, **QUIET)
    trainer.fit(model, data)
    assert 0.0 <= trainer.callback_metrics["val/domain_acc"].item() <= 1.0
    assert {"train/entropy_loss", "val/target_miou"} <= set(trainer.callback_metrics)


# ------------------------------------------------------------------------------------------------ FDA


def test_fda_restyles_source_images_in_training_batches_only(tmp_path):
    data = _data(tmp_path, paired_target=True, fda_beta=0.1)
    trainer = Trainer(**QUIET)
    data.trainer = trainer
    g = torch.Generator().manual_seed(0)
    batch = {"source": {"image": torch.rand(2, 3, 32, 32, generator=g), "mask": torch.zeros(2, 32, 32).long()},
             "target": {"image": torch.rand(2, 3, 32, 32, generator=g)}}
    trainer.training = True
    out = data.on_after_batch_transfer(batch, 0)
    assert not torch.allclose(out["source"]["image"], batch["source"]["image"])
    assert out["target"]["image"] is batch["target"]["image"] and out["source"]["mask"] is batch["source"]["mask"]
    trainer.validating = True
    val = {"image": batch["source"]["image"], "mask": batch["source"]["mask"]}
    assert data.on_after_batch_transfer(val, 0) is val
    # Without fda_beta, training batches pass through too.
    plain = _data(tmp_path, paired_target=True)
    plain.trainer, trainer.training = trainer, True
    assert plain.on_after_batch_transfer(batch, 0) is batch


def test_fda_in_a_fit_reaches_the_model_restyled(tmp_path):
    """Lightning calls the DataModule's hook: the model's source images are no dataset image (beta 0.5 swaps the
    whole amplitude spectrum), its target images are dataset images unchanged."""
    data = _data(tmp_path, paired_target=True, fda_beta=0.5)
    seen = {}

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.update(source=batch["source"]["image"].clone(), target=batch["target"]["image"].clone())

    trainer = Trainer(max_steps=1, limit_val_batches=0, callbacks=[Record()], **QUIET)
    trainer.fit(Segmentation(width_divisor=16), data)
    source_set = torch.stack([s["image"] for s in data.datasets["source_train"]])
    target_set = torch.stack([s["image"] for s in data.datasets["target_train"]])

    def distance(images, dataset):  # to the nearest dataset image, per image
        return (images[:, None] - dataset[None]).abs().flatten(2).amax(2).amin(1)

    assert (distance(seen["target"], target_set) == 0).all()
    assert (distance(seen["source"], source_set) > 0.01).all()


def test_fda_errors_name_the_option(tmp_path):
    with pytest.raises(ScarceError, match=r"fda_beta \(0.05\).*paired_target: true"):
        _data(tmp_path, fda_beta=0.05).setup("fit")
    with pytest.raises(ScarceError, match=r"swaps no frequency.*at least 1 / 32"):
        _data(tmp_path, paired_target=True, fda_beta=0.01).setup("fit")


# ------------------------------------------------------------------------------------------------ self-training


def _first_stage(tmp_path: Path, num_classes: int = 3) -> Path:
    torch.manual_seed(1)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": Segmentation(num_classes=num_classes, width_divisor=16).state_dict()}, path)
    return path


def test_self_training_teacher_is_frozen_and_thresholds_come_from_the_target(tmp_path):
    checkpoint = _first_stage(tmp_path)
    model = SelfTraining(init_checkpoint=str(checkpoint), num_classes=3, width_divisor=16, portion=0.5)
    loader = _paired_loader()
    trainer = Trainer(max_steps=2, log_every_n_steps=1, **QUIET)
    trainer.fit(model, train_dataloaders=loader)
    first = torch.load(checkpoint, weights_only=True)["state_dict"]
    # The teacher is the first stage's network, unchanged and without gradient; the student moved away from it.
    for name, value in model.teacher.state_dict().items():
        torch.testing.assert_close(value, first[f"net.{name}"])
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert any(not torch.equal(p, first[f"net.{n}"]) for n, p in model.net.named_parameters())
    model.train()
    assert model.net.training and not model.teacher.training
    # The thresholds: one pass of the teacher over the target training images.
    histogram = ConfidenceHistogram(3, bins=1000)
    with torch.no_grad():
        for batch in loader.iterables["target"]:
            histogram.update(model.teacher(batch["image"]).softmax(1))
    torch.testing.assert_close(model.pseudo_label_thresholds, histogram.thresholds(portion=0.5))
    share = trainer.callback_metrics["train/pseudo_label_share"].item()
    assert 0.0 < share < 1.0 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_self_training_pseudo_labels_are_ignored_below_the_thresholds(tmp_path):
    model = SelfTraining(init_checkpoint=str(_first_stage(tmp_path)), num_classes=3, width_divisor=16)
    model.setup("fit")
    x_t = _images(1)
    with torch.no_grad():
        probs = model.teacher(x_t).softmax(1)
    confidence, prediction = probs.max(1)
    model.pseudo_label_thresholds.copy_(torch.full((3,), confidence.median().item()))
    labels = model.pseudo_label(x_t)
    below = confidence < confidence.median()
    assert (labels[below] == 255).all() and (labels[~below] == prediction[~below]).all()
    # Every class off: no pseudo-label, the target term is 0 and the loss stays finite.
    model.pseudo_label_thresholds.fill_(float("inf"))
    assert (model.pseudo_label(x_t) == 255).all()
    trainer = Trainer(max_steps=1, log_every_n_steps=1, **QUIET)
    trainer.fit(model, train_dataloaders=_paired_loader())
    assert trainer.callback_metrics["train/pseudo_label_share"].item() == 0.0
    assert trainer.callback_metrics["train/pseudo_label_loss"].item() == 0.0


def test_self_training_checkpoint_errors_are_one_line(tmp_path):
    cases = [(tmp_path / "missing.ckpt", "no checkpoint at"), (tmp_path / "text.ckpt", "not a PyTorch checkpoint")]
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    for path, message in cases:
        with pytest.raises(ScarceError, match=message) as error:
            SelfTraining(init_checkpoint=str(path), num_classes=3, width_divisor=16).setup("fit")
        assert "\n" not in str(error.value) and "init_checkpoint" in str(error.value)
    with pytest.raises(ScarceError, match="does not fit this network") as error:
        SelfTraining(init_checkpoint=str(_first_stage(tmp_path)), num_classes=4, width_divisor=16).setup("fit")
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ configs


def _synthia_cityscapes(tmp_path: Path) -> list[str]:
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    make_synthia(tmp_path / "syn")
    return ["--data.init_args.source.root", str(tmp_path / "syn"), "--data.init_args.target.root", str(tmp_path / "cs"),
            "--data.init_args.size", "[32, 32]", "--data.init_args.batch_size", "2",
            "--trainer.num_sanity_val_steps", "0", *TINY]


def test_scarce_fit_synthia_to_cityscapes_method_configs(tmp_path, monkeypatch):
    """Every SYNTHIA -> Cityscapes method config, tiny; self-training starts from the FDA run's last checkpoint."""
    args = _synthia_cityscapes(tmp_path)
    monkeypatch.chdir(tmp_path)
    expected = {"minent": {"train/entropy_loss", "val/domain_acc"}, "advent": {"train/domain_loss", "val/domain_acc"},
                "fda": {"train/loss"}, "self_training": {"train/pseudo_label_share", "train/pseudo_label_loss"}}
    for method, metrics in expected.items():
        name = f"{method}_fcn8s_synthia_to_cityscapes"
        extra = []
        if method == "self_training":
            first = next((tmp_path / "runs/fda_fcn8s_synthia_to_cityscapes").rglob("last.ckpt"))
            extra = ["--model.init_args.init_checkpoint", str(first), "--model.init_args.threshold_samples", "2"]
        if method == "fda":
            extra = ["--data.init_args.fda_beta", "0.05"]  # b = 1 at 32x32 (the config's 0.01 is for 512x512)
        lightning_cli(["fit", "--config", str(REPO / f"configs/{name}.yaml"), *args, *extra])
        assert {"val/source_miou", "val/target_miou"} | metrics <= _metrics(tmp_path / "runs" / name), name


RENDERED_FITS = r"""
import sys
from scarce.cli import lightning_cli

tiny, repo = sys.argv[2:], sys.argv[1]
for name in ("minent", "advent", "fda", "self_training"):
    extra = []
    if name == "self_training":  # stage 2 from the AdvEnt run just made
        extra = ["--model.init_args.init_checkpoint",
                 "runs/advent_fcn8s_rendered/checkpoints/last.ckpt",
                 "--model.init_args.threshold_samples", "2"]
    lightning_cli(["fit", "--config", f"{repo}/configs/{name}_fcn8s_rendered.yaml", *tiny, *extra])
"""


def test_scarce_fit_rendered_method_configs(tmp_path):
    """The embedded method configs as committed, tiny, one after the other in one child process (rendering creates a
    GL context, which must not live in the pytest process that forks; one process imports Lightning once)."""
    env = dict(os.environ, PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS="1")
    tiny = ["--data.init_args.batch_size", "2", "--trainer.val_check_interval", "2",
            "--data.init_args.source.num_train", "4", "--data.init_args.target.num_train", "4",
            "--data.init_args.source.num_val", "2", "--data.init_args.target.num_val", "2",
            "--data.init_args.size", "[32, 32]", *TINY]
    proc = subprocess.run([sys.executable, "-c", RENDERED_FITS, str(REPO), *tiny], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"train/entropy_loss", "val/domain_acc"} <= _metrics(tmp_path / "runs/minent_fcn8s_rendered")
    assert {"train/domain_loss", "val/domain_acc"} <= _metrics(tmp_path / "runs/advent_fcn8s_rendered")
    assert {"val/source_miou", "val/target_miou"} <= _metrics(tmp_path / "runs/fda_fcn8s_rendered")
    assert {"train/pseudo_label_share"} <= _metrics(tmp_path / "runs/self_training_fcn8s_rendered")
    assert "CBST thresholds (portion 0.2" in proc.stdout + proc.stderr


@pytest.mark.parametrize("config, option, message", [
    ("fcn8s_synthia_to_cityscapes", ["--data.init_args.fda_beta", "0.05"], "paired_target: true"),
    ("self_training_fcn8s_synthia_to_cityscapes", [], "init_checkpoint: no checkpoint at"),
])
def test_user_errors_of_the_methods_are_one_line(config, option, message, tmp_path, monkeypatch):
    args = _synthia_cityscapes(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScarceError, match=message) as error:
        lightning_cli(["fit", "--config", str(REPO / f"configs/{config}.yaml"), *args, *option])
    assert "\n" not in str(error.value)


def test_scarce_fit_prints_a_methods_user_error_as_one_line(tmp_path, monkeypatch, capsys):
    args = _synthia_cityscapes(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(REPO / "configs/self_training_fcn8s_synthia_to_cityscapes.yaml"), *args])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "init_checkpoint: no checkpoint at" in err[-1] and "Traceback" not in "\n".join(err)
