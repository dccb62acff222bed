"""Offline FID / KID / IS in the MNIST classifier's feature space, and `scarce bench generative` end to end."""

import json
import os
from pathlib import Path

import pytest
import torch

from scarce._errors import DataNotFoundError, ScarceError
from scarce.cli import lightning_cli
from scarce.data.datasets.mnist import MNIST
from scarce.bench.generative import load_generative_model, main as bench_main
from scarce.metrics.generative import ClassifierFeatures, GenerativeScores, feature_scale, load_classifier
from scarce.nets.mnist_classifier import MNISTClassifier

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, split: str = "val") -> torch.Tensor:
    return MNIST(split=split, limit=n).data.unsqueeze(1).float() / 255


def test_fid_of_a_set_against_itself_is_about_zero():
    torch.manual_seed(0)
    scores = GenerativeScores(MNISTClassifier(), kid_subset_size=100, kid_subsets=20, is_splits=2)
    images = _images(300)
    scores.update(images, real=True)
    scores.update(images, real=False)
    same = scores.compute()
    assert abs(same["fid"]) < 1e-3 and abs(same["kid_mean"]) < 1e-3
    scores.reset()
    scores.update(images, real=True)
    scores.update(torch.rand_like(images), real=False)
    noise = scores.compute()
    assert noise["fid"] > 1.0 and noise["kid_mean"] > 10 * same["kid_std"]
    assert 1.0 <= noise["is_mean"] <= 10.0


def test_feature_extractor_stays_in_eval_mode():
    features = ClassifierFeatures(MNISTClassifier(dropout=0.9))
    features.train()
    x = torch.rand(3, 1, 28, 28)
    assert not features.classifier.training
    torch.testing.assert_close(features(x), features(x))  # no dropout, no batch statistics
    scale = feature_scale(features.classifier, x, batch_size=2)
    torch.testing.assert_close(features(x).pow(2).mean().sqrt(), torch.tensor(scale, dtype=torch.float32))
    unit = ClassifierFeatures(features.classifier, scale=scale)
    torch.testing.assert_close(unit(x), features(x) / scale)
    torch.testing.assert_close(unit(x).pow(2).mean(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)


def test_missing_classifier_names_the_command(tmp_path):
    with pytest.raises(DataNotFoundError, match="configs/mnist_classifier.yaml"):
        load_classifier(tmp_path / "nope.ckpt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier and a VAE, each trained briefly through `scarce fit` with their configs."""
    root = tmp_path_factory.mktemp("generative")
    quick = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--data.batch_size=64"]
    cwd = Path.cwd()
    os.chdir(root)  # monkeypatch is function-scoped; this fixture serves the whole module
    try:
        lightning_cli(["fit", "--config", str(ROOT / "configs/mnist_classifier.yaml"), "--data.limit_train=1024",
                       "--data.limit_val=128", *quick])
        lightning_cli(["fit", "--config", str(ROOT / "configs/vae_mnist.yaml"), "--data.limit_train=256",
                       "--data.limit_val=64", *quick])
    finally:
        os.chdir(cwd)
    return root


def test_bench_reports_model_above_floor(trained, capsys):
    classifier = trained / "runs/mnist_classifier/checkpoints/best.ckpt"
    vae = trained / "runs/vae_mnist/checkpoints/last.ckpt"
    out = trained / "scores.json"
    code = bench_main(["--ckpt", str(vae), "--classifier", str(classifier), "--num-samples", "300",
                       "--kid-subset-size", "100", "--batch-size", "150", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "floor: real train images" in printed and "vae_mnist" in printed
    floor, model = json.loads(out.read_text())
    assert 0 <= floor["fid"] < model["fid"]  # a VAE after 4 steps is far from real digits
    assert floor["is_mean"] > 1.5


def test_load_generative_model_detects_the_kind(trained, tmp_path):
    from scarce.lightning_modules.vae import VAE

    assert isinstance(load_generative_model(trained / "runs/vae_mnist/checkpoints/last.ckpt"), VAE)
    with pytest.raises(DataNotFoundError):
        load_generative_model(tmp_path / "missing.ckpt")


def test_load_classifier_reads_the_weights_without_the_lightning_module(trained, tmp_path):
    from scarce.lightning_modules.classifier import MNISTClassifierModule

    ckpt = trained / "runs/mnist_classifier/checkpoints/best.ckpt"
    expected = MNISTClassifierModule.load_from_checkpoint(ckpt, map_location="cpu").net.eval()
    classifier = load_classifier(ckpt)
    assert isinstance(classifier, MNISTClassifier) and not classifier.training
    x = _images(8)
    torch.testing.assert_close(classifier(x), expected(x), rtol=0, atol=0)
    torch.save(classifier.state_dict(), tmp_path / "plain.pt")  # a bare network state dict loads too
    torch.testing.assert_close(load_classifier(tmp_path / "plain.pt")(x), expected(x), rtol=0, atol=0)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ScarceError, match="not an MNIST classifier checkpoint"):
        load_classifier(tmp_path / "other.pt")
