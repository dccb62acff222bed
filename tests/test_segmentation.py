"""Segmentation training: metrics, class weights, the LightningModule learning, and `scarce fit` of every config."""

import csv
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from _configs import experiment
from _segmentation_data import make_cityscapes, make_synthia
from scarce._errors import ScarceError
from scarce.callbacks.segmentation import overlay_grid
from scarce.cli import lightning_cli, main
from scarce.callbacks.class_weights import ClassWeights
from scarce.datamodules.segmentation import (
    SegmentationDataModule,
    SegmentationSource,
    SegmentationTransform,
    build_dataset,
)
from scarce.data.stats import class_pixel_counts, log_frequency_weights, median_frequency_weights
from scarce.lightning_modules.segmentation import Segmentation
from scarce.metrics.segmentation import SegmentationMetrics, format_iou_table

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------ metrics


def test_iou_and_accuracy_by_hand():
    metric = SegmentationMetrics(3)
    target = torch.tensor([[[0, 0, 1, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1, 2]]])
    metric.update(pred, target)
    result = metric.compute()
    # class 0: 1 / 2; class 1: 2 / 3; class 2: only predicted on an ignored pixel -> no IoU.
    torch.testing.assert_close(result["iou"][:2], torch.tensor([1 / 2, 2 / 3]))
    assert result["iou"][2].isnan()
    torch.testing.assert_close(result["miou"], torch.tensor((1 / 2 + 2 / 3) / 2))
    torch.testing.assert_close(result["acc"], torch.tensor(3 / 4))
    table = format_iou_table(result["iou"], ["a", "b", "c"])
    assert "0.500" in table and "c  -" in table and "0.583" in table


def test_metrics_accumulate_over_the_split_not_per_batch():
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 4, (6, 8, 8), generator=gen)
    targets = torch.randint(0, 4, (6, 8, 8), generator=gen)
    targets[0, :4] = 255
    whole, batched = SegmentationMetrics(4), SegmentationMetrics(4)
    whole.update(preds, targets)
    for i in range(0, 6, 2):
        batched.update(preds[i:i + 2], targets[i:i + 2])
    for key in ("iou", "miou", "acc"):
        torch.testing.assert_close(batched.compute()[key], whole.compute()[key])
    logits = torch.nn.functional.one_hot(preds, 4).permute(0, 3, 1, 2).float()
    from_logits = SegmentationMetrics(4)
    from_logits.update(logits, targets)
    torch.testing.assert_close(from_logits.compute()["miou"], whole.compute()["miou"])


def test_median_frequency_weights():
    weights = median_frequency_weights(np.array([100, 10, 0, 50]))
    # frequencies 100/160, 10/160, 50/160; median 50/160.
    np.testing.assert_allclose(weights, [0.5, 5.0, 0.0, 1.0])
    with pytest.raises(ScarceError, match="no labelled pixel"):
        median_frequency_weights(np.zeros(3))


def test_log_frequency_weights_are_the_books():
    weights = log_frequency_weights(np.array([100, 10, 0, 50]))
    np.testing.assert_allclose(weights, [np.log(1.6), np.log(16.0), 0.0, np.log(3.2)])
    with pytest.raises(ScarceError, match="no labelled pixel"):
        log_frequency_weights(np.zeros(3))


def test_overlay_grid_shape():
    grid = overlay_grid(torch.rand(2, 3, 8, 10), torch.zeros(2, 8, 10, dtype=torch.long),
                        torch.full((2, 8, 10), 255))
    assert grid.shape == (3, 2 * 8 + 3 * 2, 3 * 10 + 4 * 2)


def test_bad_hyperparameters():
    with pytest.raises(ScarceError, match="class_weights has 2 values"):
        Segmentation(num_classes=3, width_divisor=16, class_weights=[1.0, 2.0])
    with pytest.raises(ScarceError, match="class_names"):
        Segmentation(num_classes=3, width_divisor=16, class_names=["a"])
    with pytest.raises(ScarceError, match="backbone_weights '/nonexistent.pth' is not a file"):
        Segmentation(num_classes=3, width_divisor=16, backbone_weights="/nonexistent.pth")
    with pytest.raises(ScarceError, match="width_divisor must divide 64"):
        Segmentation(num_classes=3, width_divisor=3)
    with pytest.raises(ScarceError, match="root"):
        SegmentationDataModule(SegmentationSource(kind="cityscapes")).setup("fit")
    with pytest.raises(ScarceError, match="paired_target"):
        SegmentationDataModule(SegmentationSource(kind="cityscapes", root="x"), paired_target=True)


# ------------------------------------------------------------------------------------------------ training


class Halves(Dataset):
    """Each image is split into two halves of two different classes; each class has its own colour."""

    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]])

    def __init__(self, n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.pairs = [torch.randperm(3, generator=gen)[:2] for _ in range(n)]
        self.vertical = torch.rand(n, generator=gen) < 0.5

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        mask = torch.empty(32, 32, dtype=torch.long)
        a, b = self.pairs[i].tolist()
        if self.vertical[i]:
            mask[:, :16], mask[:, 16:] = a, b
        else:
            mask[:16], mask[16:] = a, b
        mask[0, :] = 255  # an ignored row: must not count
        image = self.colours[mask.clamp(max=2)].permute(2, 0, 1).clone()
        return {"image": image, "mask": mask}


def test_learns_a_tiny_segmentation_task(tmp_path):
    seed_everything(0)
    model = Segmentation(num_classes=3, width_divisor=16, dropout=0.0, optimizer=partial(torch.optim.Adam, lr=1e-3),
                         class_names=["r", "g", "b"])
    train = DataLoader(Halves(64, 0), batch_size=8, shuffle=True)
    val = DataLoader(Halves(16, 1), batch_size=16)
    trainer = Trainer(max_epochs=10, check_val_every_n_epoch=10, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      num_sanity_val_steps=0)
    trainer.fit(model, train, val)
    result = model.last_results["val"]
    # Chance is 1/3 accuracy; a network that reads colours gets nearly every pixel but the borders.
    assert result["acc"] > 0.8, result
    assert result["miou"] > 0.6, result
    assert trainer.callback_metrics["val/miou"] == result["miou"]


def test_channels_last_keeps_the_arithmetic_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    plain = Segmentation(num_classes=3, width_divisor=16, batch_norm=True, class_names=["r", "g", "b"]).eval()
    nhwc = Segmentation(num_classes=3, width_divisor=16, batch_norm=True, class_names=["r", "g", "b"],
                        channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    conv = nhwc.net.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    image = torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(image), plain(image), rtol=1e-4, atol=1e-4)
    # A checkpoint round trip (Lightning's load_from_checkpoint) keeps the layout the hyperparameter asks for.
    torch.save({"state_dict": nhwc.state_dict(), "hyper_parameters": dict(nhwc.hparams),
                "pytorch-lightning_version": "2.6.0"}, tmp_path / "m.ckpt")
    loaded = Segmentation.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_two_domains_gap_overlays_and_median_frequency(tmp_path):
    make_cityscapes(tmp_path / "cs", splits=("val",))
    make_synthia(tmp_path / "syn")
    seed_everything(0)
    data = SegmentationDataModule(SegmentationSource(kind="synthia", root=str(tmp_path / "syn")),
                                  SegmentationSource(kind="cityscapes", root=str(tmp_path / "cs")),
                                  size=(32, 48), batch_size=2)
    model = Segmentation(width_divisor=16)
    from lightning.pytorch.loggers import CSVLogger

    from scarce.callbacks.segmentation import SegmentationOverlays

    trainer = Trainer(max_steps=2, limit_val_batches=1, logger=CSVLogger(tmp_path, name="csv"),
                      callbacks=[SegmentationOverlays(num_images=2), ClassWeights("median_frequency")],
                      enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    for key in ("val/source_miou", "val/target_miou", "val/source_acc", "val/target_acc", "val/miou_gap",
                "val/source_loss", "val/target_loss"):
        assert key in trainer.callback_metrics, key
    torch.testing.assert_close(trainer.callback_metrics["val/miou_gap"],
                               trainer.callback_metrics["val/source_miou"] - trainer.callback_metrics["val/target_miou"])
    # Median-frequency weights from the source training masks, resized but not augmented.
    plain = build_dataset(data.source, "train", (32, 48), SegmentationTransform((32, 48), train=False))
    counts = class_pixel_counts(plain)
    assert (counts > 0).all()  # the tiny SYNTHIA tree uses every train id
    np.testing.assert_allclose(model.loss_weights.numpy(), median_frequency_weights(counts), rtol=1e-5)
    overlays = sorted(p.name for p in (Path(trainer.log_dir) / "overlays").glob("*.png"))
    assert overlays == ["epoch000_source.png", "epoch000_target.png"]
    trainer.test(model, data)
    assert "test/miou" in trainer.callback_metrics


def test_log_frequency_option_sets_the_books_weights_from_source_masks(tmp_path):
    make_synthia(tmp_path / "syn")
    data = SegmentationDataModule(SegmentationSource(kind="synthia", root=str(tmp_path / "syn")), size=(32, 48),
                                  batch_size=2)
    model = Segmentation(width_divisor=16)
    trainer = Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[ClassWeights("log_frequency", samples=3)],
                      default_root_dir=tmp_path)
    trainer.fit(model, data)
    plain = build_dataset(data.source, "train", (32, 48), SegmentationTransform((32, 48), train=False))
    expected = log_frequency_weights(class_pixel_counts(plain, limit=3))
    np.testing.assert_allclose(model.loss_weights.numpy(), expected, rtol=1e-5)
    with pytest.raises(ScarceError, match="weighting.*median_frequency"):
        data.class_weights(weighting="inverse")
    # Resumed: the weights come from the checkpoint (a buffer); the callback reads no data.
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    resumed = Segmentation(width_divisor=16)
    data.class_weights = None  # reading the masks again would fail
    trainer = Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[ClassWeights("log_frequency", samples=3)],
                      default_root_dir=tmp_path)
    trainer.fit(resumed, data, ckpt_path=checkpoint)
    np.testing.assert_allclose(resumed.loss_weights.numpy(), expected, rtol=1e-5)


def test_the_cli_names_an_optimizer_that_does_not_import(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(REPO / "configs/fcn8s_rendered.yaml"), "--model.init_args.optimizer",
              "torch.optim.RMSPropp", "--print_config"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model.optimizer" in err and "RMSPropp" in err, err


def test_scarce_fit_says_in_one_line_where_the_imagenet_weights_go(tmp_path, monkeypatch, capsys):
    from scarce.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(REPO / "configs/fcn8s_rendered.yaml"),
              "--model.init_args.backbone_weights", "IMAGENET1K_V1", "--trainer.fast_dev_run", "1"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("scarce fit: error: FCN8s: backbone_weights IMAGENET1K_V1 (VGG16_BN_Weights.IMAGENET1K_V1)")
    assert f"{tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg16_bn-6c64b313.pth'} is not there" in err


def test_paired_target_batches_drop_target_masks(tmp_path):
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    make_synthia(tmp_path / "syn")
    data = SegmentationDataModule(SegmentationSource(kind="synthia", root=str(tmp_path / "syn")),
                                  SegmentationSource(kind="cityscapes", root=str(tmp_path / "cs")),
                                  size=(32, 32), batch_size=2, paired_target=True)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    batch = batch[0] if isinstance(batch, tuple) else batch
    assert set(batch) == {"source", "target"}
    assert "mask" in batch["source"] and "mask" not in batch["target"]
    assert batch["target"]["image"].shape == (2, 3, 32, 32)


# ------------------------------------------------------------------------------------------------ configs

TINY = ["--model.width_divisor", "16", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1"]


def _metrics(run_dir: Path) -> set[str]:
    files = list(run_dir.glob("csv/version_*/metrics.csv"))
    assert files, f"no metrics.csv under {run_dir}"
    with open(files[0]) as f:
        return set(next(csv.reader(f)))


@pytest.mark.parametrize("shards", [False, True], ids=["folders", "shards"])
def test_scarce_fit_cityscapes_config(tmp_path, monkeypatch, shards):
    make_cityscapes(tmp_path / "cs", splits=("train", "val"))
    root, kind = str(tmp_path / "cs"), "cityscapes"
    if shards:
        from scarce.data.convert import convert_cityscapes

        convert_cityscapes(root, tmp_path / "cs_shards", 1, None)
        root, kind = str(tmp_path / "cs_shards"), "shards"
    monkeypatch.chdir(tmp_path)
    lightning_cli(["fit", "--config", str(REPO / "configs/fcn8s_cityscapes.yaml"), "--data.source.root", root,
                   "--data.source.kind", kind, "--data.size", "[32, 64]", *TINY])
    assert {"val/miou", "val/acc", "train/loss"} <= _metrics(tmp_path / "runs/fcn8s_cityscapes")


def test_scarce_fit_synthia_to_cityscapes_config(tmp_path, monkeypatch):
    make_cityscapes(tmp_path / "cs", splits=("val",))
    make_synthia(tmp_path / "syn")
    monkeypatch.chdir(tmp_path)
    lightning_cli(["fit", "--config", str(REPO / "configs/fcn8s_synthia_to_cityscapes.yaml"),
                   "--data.source.root", str(tmp_path / "syn"), "--data.target.root", str(tmp_path / "cs"),
                   "--data.size", "[32, 32]", *TINY])
    assert {"val/source_miou", "val/target_miou", "val/miou_gap"} <= _metrics(
        tmp_path / "runs/fcn8s_synthia_to_cityscapes")


@pytest.mark.parametrize("name", ["fcn8s_rendered", "fcn8s_rendered_oracle", "fcn8s_randomized"])
def test_scarce_fit_rendered_config(tmp_path, name):
    # In a child process: rendering creates a GL context, which must not live in the pytest process that forks.
    env = dict(os.environ, PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "scarce", "fit", "--config", str(REPO / f"configs/{name}.yaml"),
           "--model.width_divisor", "16", "--data.batch_size", "2", "--trainer.max_steps", "2",
           "--trainer.val_check_interval", "2", "--data.source.num_train", "4", "--data.source.num_val", "2",
           "--data.target.num_val", "2", "--data.size", "[32, 32]", "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"val/source_miou", "val/target_miou", "val/miou_gap"} <= _metrics(tmp_path / f"runs/{name}")
    assert "realism gap: source mIoU" in proc.stdout + proc.stderr


# The configs that must be fcn8s_rendered.yaml with only the source preset changed, and that preset.
SOURCE_VARIANTS = {"fcn8s_rendered_oracle": "photo-clutter", "fcn8s_randomized": "randomized"}


@pytest.mark.parametrize("name", sorted(SOURCE_VARIANTS))
def test_source_variant_configs_differ_from_source_only_only_in_the_source_preset(name):
    """The oracle bounds the gap only if it is the source-only run with target labels, and the randomized run
    compares source domains only if it is the source-only run on randomized scenes: same everything else (budget,
    network, data, target, validation); only the source preset and the run folder differ. Edit them together."""
    base, variant = experiment("fcn8s_rendered"), experiment(name)
    assert base["data"]["init_args"]["source"].pop("preset") == "synthetic-flat"
    assert variant["data"]["init_args"]["source"].pop("preset") == SOURCE_VARIANTS[name]
    assert variant["data"]["init_args"]["target"]["preset"] == "photo-clutter"
    assert variant == base


@pytest.mark.parametrize("config", ["fcn8s_rendered.yaml", "dann_fcn8s_rendered.yaml", "fcn8s_rendered_oracle.yaml",
                                    "fcn8s_randomized.yaml"])
def test_rendered_class_names_match_the_config(config):
    """The configs spell out scarce.render.CLASS_NAMES (the model takes names from its config): keep them equal."""
    import yaml

    from scarce.render.segmentation import rendered_class_names

    args = yaml.safe_load((REPO / "configs" / config).read_text())["model"]["init_args"]
    assert tuple(args["class_names"]) == rendered_class_names()
    assert args["num_classes"] == len(rendered_class_names())


def test_rendered_source_reads_the_same_scenes_from_splits_rendered_once(tmp_path, capsys):
    """`scarce render --split` with a source's seeds (seed, + 1, + 2) writes the scenes that source renders on the fly:
    with `root` set to the folder (and `test_split: test`) every split gives the same images and masks, bit for bit.
    benchmarks/realism_gap.py relies on it to render each domain once for all its fits."""
    from scarce.render.segmentation import SPLIT_SEED_OFFSETS

    seed, counts, size = 7, {"train": 3, "val": 2, "test": 2}, (32, 40)
    split_args = [a for split, n in counts.items() for a in ("--split", split, str(seed + SPLIT_SEED_OFFSETS[split]),
                                                              str(n))]
    with pytest.raises(SystemExit) as exc:  # spawned workers: no GL context in this process
        main(["render", "--preset", "photo-clutter", "--out", str(tmp_path / "scenes"), "--size", *map(str, size),
              "--workers", "2", "--preview", "0", *split_args])
    assert exc.value.code == 0
    assert capsys.readouterr().out.count("wrote split ") == 3
    on_the_fly = SegmentationSource(kind="rendered", preset="photo-clutter", seed=seed, num_train=3, num_val=2)
    read_back = SegmentationSource(kind="rendered", root=str(tmp_path / "scenes"), num_train=3, num_val=2,
                                   test_split="test")
    transform = SegmentationTransform(size, train=False)
    for stage in counts:
        rendered, stored = (build_dataset(source, stage, size, transform) for source in (on_the_fly, read_back))
        assert len(rendered) == len(stored) == counts[stage]
        # Rendered in a spawned DataLoader worker: a GL context in this process would hang the forked workers of
        # later tests, and an earlier test may have left one here already (then forked workers refuse to render).
        for a, b in zip(DataLoader(rendered, batch_size=None, num_workers=1, multiprocessing_context="spawn"), stored):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]), stage
    with pytest.raises(SystemExit) as exc:
        main(["render", "--preset", "photo-clutter", "--out", str(tmp_path / "other"), "--seed", "1",
              "--split", "train", "0", "2"])
    assert exc.value.code == 1
    assert "--split names each split's seed and count: drop --num-samples, --seed and --prefix" in \
        capsys.readouterr().err
    # Each malformed --split is refused with one line naming it, before anything is written.
    for split, expected in ((["train", "x", "2"], "--split train x 2: SEED and COUNT must be integers"),
                            (["train", "0", "0"], "--split train 0 0: COUNT must be >= 1"),
                            (["tr/ain", "0", "2"], "--split 'tr/ain': NAME must be a plain file name prefix"),
                            (["train", "0", "2", "--split", "train", "1", "2"], "--split train is given twice")):
        with pytest.raises(SystemExit) as exc:
            main(["render", "--preset", "photo-clutter", "--out", str(tmp_path / "bad"), "--split", *split])
        assert exc.value.code == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
        assert not (tmp_path / "bad").exists()


def test_one_default_render_size():
    """Every default size between the rendered datasets and the renderer is scarce.render.RENDER_SIZE.

    Here rather than in test_render.py: importing torchvision (which the segmentation datasets need) after an
    llvmpipe GL context exists in the process crashes (two LLVMs), and test_render.py renders in-process.
    """
    import inspect

    from scarce.render import RENDER_SIZE, RenderedDataset, SampleRenderer
    from scarce.render.cli import render_to_shards
    from scarce.render.segmentation import RenderedSegmentation

    for func in (SampleRenderer, RenderedDataset, RenderedSegmentation, render_to_shards):
        assert inspect.signature(func).parameters["size"].default == RENDER_SIZE, func


# ------------------------------------------------------------------------------------------------ data commands


def test_scarce_data_convert_and_stats(tmp_path, capsys):
    from scarce.data.cli import main as data_main

    make_cityscapes(tmp_path / "cs", splits=("train",), label_ids=True)
    assert data_main(["convert", "cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "out")]) == 0
    assert ": train 4 records in 1 shard(s); " in capsys.readouterr().out
    assert data_main(["stats", "shards", "--root", str(tmp_path / "out"), "--json"]) == 0
    import json

    out, err = capsys.readouterr()
    stats = json.loads(out)
    assert err.splitlines()[-1].startswith("class pixel counts: 4/4 masks (100%)")
    counts = np.array([c["pixels"] for c in stats["classes"]])
    assert stats["images"] == 4 and counts.sum() == stats["labelled_pixels"]
    assert stats["labelled_pixels"] + stats["ignored_pixels"] == 4 * 24 * 40
    np.testing.assert_allclose([c["median_frequency_weight"] for c in stats["classes"]],
                               median_frequency_weights(counts))
    np.testing.assert_allclose([c["log_frequency_weight"] for c in stats["classes"]], log_frequency_weights(counts))
    assert data_main(["stats", "cityscapes", "--root", str(tmp_path / "cs")]) == 0
    table = capsys.readouterr().out
    assert "road" in table and "weight" in table
