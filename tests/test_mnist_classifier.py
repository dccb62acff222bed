"""The MNIST classifier behind the offline generative metrics: network, training, config."""

from pathlib import Path

import torch

from scarce.cli import lightning_cli
from scarce.lightning_modules.classifier import MNISTClassifierModule
from scarce.nets.mnist_classifier import MNISTClassifier

ROOT = Path(__file__).resolve().parents[1]


def test_forward_backward_and_feature_shapes():
    net = MNISTClassifier(num_features=32)
    x = torch.rand(4, 1, 28, 28)
    assert net.forward_features(x).shape == (4, 32)
    logits = net(x)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"


def test_config_trains_past_chance_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["fit", "--config", str(ROOT / "configs/mnist_classifier.yaml"), "--trainer.max_epochs=1",
                         "--data.limit_train=1536", "--data.limit_val=256", "--data.batch_size=64",
                         "--trainer.enable_progress_bar=false"])
    assert cli.trainer.callback_metrics["val/acc"] > 0.7  # chance is 0.1
    ckpt = tmp_path / "runs/mnist_classifier/checkpoints/best.ckpt"
    model = MNISTClassifierModule.load_from_checkpoint(ckpt)
    assert model.net.num_features == 128
