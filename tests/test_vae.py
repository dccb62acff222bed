"""VAE (notebook 7.7): reparameterisation statistics, KL closed form, training lowers the loss, grids, config."""

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch.distributions import Normal, kl_divergence

from scarce.callbacks.generative import LatentWalk, ReconstructionGrid, SampleGrid, latent_walk_codes
from scarce.cli import lightning_cli
from scarce.datamodules.mnist import MNISTDataModule
from scarce.lightning_modules.vae import VAE, gaussian_kl, reconstruction_loss
from scarce.nets.vae import ConvVAE, reparameterize

ROOT = Path(__file__).resolve().parents[1]


def test_reparameterisation_statistics():
    mu = torch.tensor([[1.5, -2.0, 0.0]]).expand(200_000, 3)
    logvar = torch.tensor([[0.0, math.log(4.0), math.log(0.01)]]).expand(200_000, 3)
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.02, rtol=0)
    # std = exp(0.5 * logvar): 1, 2, 0.1 (the book's exp(logvar) would give 1, 4, 0.01)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0, 0.1]), rtol=0.01, atol=0)


def test_reparameterisation_is_differentiable():
    mu, logvar = torch.zeros(4, 2, requires_grad=True), torch.zeros(4, 2, requires_grad=True)
    reparameterize(mu, logvar).sum().backward()
    assert torch.equal(mu.grad, torch.ones(4, 2)) and logvar.grad.abs().sum() > 0


def test_kl_matches_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(16, 5), torch.randn(16, 5)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    assert torch.all(gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 2)) == 0)


def test_reconstruction_losses_are_summed_per_image():
    logits, target = torch.zeros(2, 1, 28, 28), torch.ones(2, 1, 28, 28)
    torch.testing.assert_close(reconstruction_loss(logits, target, "mse"), torch.full((2,), 784 * 0.25))
    torch.testing.assert_close(reconstruction_loss(logits, target, "bce"), torch.full((2,), 784 * math.log(2)))


def test_network_shapes():
    net = ConvVAE(latent_dim=3)
    logits, mu, logvar = net(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, 1, 28, 28) and mu.shape == logvar.shape == (5, 3)


def _trainer(tmp_path, **kwargs) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("reconstruction", ["mse", "bce"])
def test_few_steps_lower_the_loss(tmp_path, reconstruction):
    torch.manual_seed(0)
    data = MNISTDataModule(batch_size=50, limit_train=500, limit_val=100)
    model = VAE(latent_dim=2, reconstruction=reconstruction, optimizer=partial(torch.optim.Adam, lr=3e-3))
    before = _trainer(tmp_path).validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    _trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, datamodule=data)
    after = _trainer(tmp_path).validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    assert after < 0.8 * before


def test_latent_walk_codes_cover_the_square():
    codes = latent_walk_codes(20, 1.5)
    assert codes.shape == (400, 2)
    assert codes.min() == -1.5 and codes.max() == 1.5
    torch.testing.assert_close(codes[0], torch.tensor([-1.5, 1.5]))  # top-left: lowest x, highest y


def test_grid_callbacks_write_images(tmp_path):
    data = MNISTDataModule(batch_size=16, limit_train=32, limit_val=16)
    callbacks = [SampleGrid(num_samples=16), ReconstructionGrid(num_images=16), LatentWalk(steps=20)]
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, default_root_dir=tmp_path, callbacks=callbacks)
    trainer.fit(VAE(latent_dim=2), datamodule=data)
    figures = tmp_path / "figures"
    walk = Image.open(figures / "latent_walk_epoch000.png")
    assert walk.size == (20 * 29 + 1, 20 * 29 + 1)  # 28-pixel images, 1-pixel padding
    assert Image.open(figures / "samples_epoch000.png").size == (4 * 29 + 1, 4 * 29 + 1)
    assert Image.open(figures / "reconstructions_epoch000.png").size == (8 * 29 + 1, 4 * 29 + 1)


def test_latent_walk_skipped_for_other_sizes(tmp_path):
    trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
                      callbacks=[LatentWalk()])
    trainer.fit(VAE(latent_dim=3), datamodule=MNISTDataModule(batch_size=8, limit_train=8, limit_val=8))
    assert not (tmp_path / "figures").exists()


def test_config_runs_a_short_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lightning_cli(["fit", "--config", str(ROOT / "configs/vae_mnist.yaml"), "--trainer.max_epochs=1",
                   "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--data.limit_train=64",
                   "--data.limit_val=32", "--data.batch_size=16", "--trainer.enable_progress_bar=false"])
    assert (tmp_path / "runs/vae_mnist/checkpoints/last.ckpt").is_file()
    assert (tmp_path / "runs/vae_mnist/csv/version_0/metrics.csv").read_text().count("val/loss")
