"""GAN (notebook 7.8): losses, gradient penalty under loss scaling, EMA rule, DDP on gloo, bf16, configs."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from scarce.datamodules.mnist import MNISTDataModule
from scarce.lightning_modules.gan import GAN, discriminator_loss, generator_loss, gradient_penalty
from scarce.nets.dcgan import Discriminator, Generator

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(generator_channels=(32, 16, 8, 8), discriminator_channels=(8, 16, 16))


def test_networks_shapes_and_gradients():
    gen, disc = Generator(noise_dim=3), Discriminator()
    images = gen(torch.randn(4, 3))
    assert images.shape == (4, 1, 28, 28) and images.abs().max() <= 1
    disc(images).sum().backward()
    for name, p in [*gen.named_parameters(), *disc.named_parameters()]:
        assert p.grad is not None, f"no gradient for {name}"


def test_losses_match_their_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    softplus = nn.functional.softplus
    torch.testing.assert_close(discriminator_loss("nonsaturating", real, fake),
                               softplus(-real).mean() + softplus(fake).mean())
    torch.testing.assert_close(generator_loss("nonsaturating", fake), softplus(-fake).mean())
    torch.testing.assert_close(discriminator_loss("hinge", real, fake), torch.tensor((0 + 2) / 2 + (1.5 + 0) / 2))
    torch.testing.assert_close(discriminator_loss("wgan-gp", real, fake), fake.mean() - real.mean())
    torch.testing.assert_close(generator_loss("hinge", fake), -fake.mean())


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is (|w| - 1)^2 exactly."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((1, 1, 28, 28), scale))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("scale", [0.01, 0.1])
def test_gradient_penalty_closed_form_and_unscaled(scale):
    critic, real, fake = Linear(scale), torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    expected = (scale * 28 - 1) ** 2
    plain = gradient_penalty(critic, real, fake)
    torch.testing.assert_close(plain, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaled = gradient_penalty(critic, real, fake, scaler)
    torch.testing.assert_close(scaled, plain)
    # The penalty's own gradient reaches the critic (double backward) and is the same with the scaler.
    (g_plain,) = torch.autograd.grad(gradient_penalty(critic, real, fake), critic.w)
    (g_scaled,) = torch.autograd.grad(gradient_penalty(critic, real, fake, scaler), critic.w)
    torch.testing.assert_close(g_scaled, g_plain)
    torch.testing.assert_close(g_plain, torch.full_like(critic.w, 2 * (scale * 28 - 1) / 28), rtol=1e-4, atol=1e-6)


def test_gradient_penalty_under_fp16_autocast_matches_fp32():
    torch.manual_seed(0)
    critic, real, fake = Discriminator(norm="none", dropout=0.0), torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    torch.manual_seed(1)
    reference = gradient_penalty(critic, real, fake)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.float16):
        half = gradient_penalty(critic, real, fake, torch.amp.GradScaler("cpu", init_scale=2.0**8))
    torch.testing.assert_close(half, reference, rtol=2e-2, atol=1e-3)
    # A scale too large overflows fp16: the penalty is then non-finite, so the scaler skips the step and backs off.
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.float16):
        overflow = gradient_penalty(critic, real, fake, torch.amp.GradScaler("cpu", init_scale=2.0**40))
    assert not torch.isfinite(overflow)


def test_ema_update_rule():
    model = GAN(noise_dim=2, ema_decay=0.9, **TINY)
    ema_params = list(model.generator_ema.module.parameters())
    model.generator_ema.update_parameters(model.generator)  # the first update copies the weights
    for e, p in zip(ema_params, model.generator.parameters()):
        torch.testing.assert_close(e, p)
    before = [p.detach().clone() for p in ema_params]
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(torch.randn_like(p))
    model.generator_ema.update_parameters(model.generator)
    for e, b, p in zip(ema_params, before, model.generator.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * p)
        assert not e.requires_grad


def _fit(model: GAN, tmp_path: Path, **trainer_kwargs) -> Trainer:
    data = MNISTDataModule(batch_size=32, limit_train=320, limit_val=32)
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      **trainer_kwargs)
    trainer.fit(model, datamodule=data)
    return trainer


def test_few_steps_lower_discriminator_loss_and_move_ema(tmp_path):
    torch.manual_seed(0)
    model = GAN(noise_dim=2, **TINY, lr_d=2e-3, lr_g=2e-3, ema_decay=0.5)
    batch = {"image": MNISTDataModule(limit_val=64)._dataset("val").data[:64].unsqueeze(1).float() / 255}
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        before = model._d_loss(batch["image"] * 2 - 1, model.generator(torch.randn(64, 2)))["d_loss"]
    ema_before = [p.clone() for p in model.generator_ema.module.parameters()]
    model.train()
    _fit(model, tmp_path, limit_train_batches=6, limit_val_batches=0)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        after = model._d_loss(batch["image"] * 2 - 1, model.generator(torch.randn(64, 2)))["d_loss"]
    assert after < before
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, model.generator_ema.module.parameters()))
    assert model.sample(5).shape == model.sample(5, ema=False).shape == (5, 1, 28, 28)


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_bf16_mixed_training_is_finite(tmp_path, loss):
    model = GAN(noise_dim=4, loss=loss, discriminator_norm="none" if loss == "wgan-gp" else "batch", **TINY)
    trainer = _fit(model, tmp_path, precision="bf16-mixed", limit_train_batches=3, limit_val_batches=1)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/d_loss_epoch"]) and torch.isfinite(metrics["val/g_loss"])
    if loss == "wgan-gp":
        assert torch.isfinite(metrics["train/gp_epoch"])


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    from lightning.pytorch import Trainer, seed_everything
    from scarce.datamodules.mnist import MNISTDataModule
    from scarce.lightning_modules.gan import GAN

    out, loss = sys.argv[1], sys.argv[2]
    seed_everything(0)
    model = GAN(noise_dim=2, loss=loss, discriminator_norm="none" if loss == "wgan-gp" else "batch",
                generator_channels=(32, 16, 8, 8), discriminator_channels=(8, 16, 16))
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, limit_train_batches=3,
                      limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.fit(model, datamodule=MNISTDataModule(batch_size=16, limit_train=96))
    params = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    torch.save({"params": params, "steps": trainer.global_step}, f"{out}/rank{trainer.global_rank}.pt")
""")


@pytest.mark.parametrize("loss", ["wgan-gp"])
def test_ddp_two_cpu_processes_stay_in_sync(tmp_path, loss):
    """strategy=ddp on gloo, no find_unused_parameters: both ranks end with identical weights."""
    script = tmp_path / "ddp_gan.py"
    script.write_text(DDP_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), loss], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0["steps"] == rank1["steps"] > 0
    for name, value in rank0["params"].items():
        if "running_" in name or "num_batches" in name:  # BN statistics are per rank between broadcasts
            continue
        torch.testing.assert_close(value, rank1["params"][name], msg=f"{name} differs between ranks")
    initial = GAN(noise_dim=2, **TINY).generator.fc[0].weight
    assert not torch.equal(rank0["params"]["generator.fc.0.weight"], initial)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_wgan_gp_mixed_precision_on_gpu(tmp_path, precision):
    model = GAN(noise_dim=2, loss="wgan-gp", discriminator_norm="none", **TINY)
    data = MNISTDataModule(batch_size=32, limit_train=320, limit_val=32)
    trainer = Trainer(accelerator="gpu", devices=1, precision=precision, max_epochs=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train/gp_epoch"])


@pytest.mark.parametrize("config", ["gan_mnist", "gan_mnist_hinge", "gan_mnist_wgangp"])
def test_config_runs_a_short_fit(tmp_path, monkeypatch, config):
    from scarce.cli import lightning_cli

    monkeypatch.chdir(tmp_path)
    lightning_cli(["fit", "--config", str(ROOT / f"configs/{config}.yaml"), "--trainer.max_epochs=1",
                   "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--data.limit_train=32",
                   "--data.limit_val=16", "--data.batch_size=16", "--trainer.enable_progress_bar=false"])
    run = tmp_path / "runs" / config
    assert (run / "checkpoints/last.ckpt").is_file()
    assert (run / "csv/version_0/figures/latent_walk_epoch000.png").is_file()
    assert (run / "csv/version_0/figures/samples_epoch000.png").is_file()
