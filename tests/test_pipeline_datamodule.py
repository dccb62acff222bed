"""TFRecordDataModule: a real tiny Lightning fit over JPEG + PNG-mask shards, every record once per epoch."""

import io

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from scarce import shards as tfr
from scarce._errors import ScarceError
from scarce.data.transforms import BatchCropResize
from scarce.datamodules.tfrecord import TFRecordDataModule

N = 22


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)

    def records(n):
        for i in range(n):
            yield {"image": _encode(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), "JPEG"),
                   "mask": _encode(rng.integers(0, 3, (20, 24), dtype=np.uint8), "PNG"), "label": i % 2, "id": i}

    tfr.write_shards(records(N), root, prefix="train", num_shards=3, compression="gzip")
    tfr.write_shards(records(6), root, prefix="val", num_shards=1)
    return root


class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 3, 1)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        assert batch["image"].shape[1:] == (3, 16, 16) and batch["image"].dtype == torch.float32
        assert batch["mask"].shape[1:] == (16, 16) and batch["mask"].dtype == torch.int64
        self.seen.setdefault(self.current_epoch, []).extend(batch["id"].tolist())
        return self.layer(batch["image"]).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_mean", self.layer(batch["image"]).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_fit_sees_every_record_once_per_epoch(shards, num_workers):
    dm = TFRecordDataModule(train=str(shards / "train-*.tfrecord"), val=str(shards / "val-*.tfrecord"),
                            features={"image": "jpeg", "mask": "png", "label": "int", "id": "int"}, size=(16, 16),
                            batch_size=4, num_workers=num_workers, shuffle_buffer=8, drop_last=False)
    model = Recorder()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert sorted(model.seen) == [0, 1]
    for ids in model.seen.values():
        assert sorted(ids) == list(range(N))
    assert model.seen[0] != model.seen[1]  # a new order each epoch
    assert dm.datasets["train"].epoch == 1
    # training JPEGs wait for the crop window (decoded alone, mask cropped alike); validation decodes whole
    assert dm.datasets["train"].parser.decode.defer_jpeg and not dm.datasets["val"].parser.decode.defer_jpeg


def test_map_style_mode_and_missing_split(shards):
    dm = TFRecordDataModule(train=str(shards / "val-*.tfrecord"), features={"image": "jpeg", "label": "int"},
                            size=(8, 8), batch_size=2, num_workers=0, streaming=False, augment=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and batch["label"].dtype == torch.int64
    with pytest.raises(ScarceError, match="--data.test"):
        dm.test_dataloader()


def _gpu_decode_fit(shards, accelerator: str) -> Recorder:
    dm = TFRecordDataModule(train=str(shards / "train-*.tfrecord"), features={"image": "jpeg", "mask": "png",
                            "label": "int", "id": "int"}, size=(16, 16), batch_size=4, num_workers=0,
                            gpu_decode=True, drop_last=False)

    class OnDevice(Recorder):
        def training_step(self, batch, batch_idx):
            assert batch["image"].device.type == accelerator == batch["mask"].device.type
            assert 0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1
            return super().training_step(batch, batch_idx)

    model = OnDevice()
    pl.Trainer(max_epochs=1, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model, dm)
    assert sorted(model.seen[0]) == list(range(N))
    return model


def test_batched_decode_path_on_cpu(shards):
    # the gpu_decode code path (encoded bytes in the batch, decode + augment per batch) on the CPU
    _gpu_decode_fit(shards, "cpu")


@pytest.mark.gpu
def test_gpu_decode_on_cuda(shards):
    _gpu_decode_fit(shards, "cuda")


def test_batch_crop_resize_crops_and_flips_the_mask_with_the_image():
    # Left half red (class 1), right half blue (class 2): after any crop and flip, colour and id still agree.
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    image[0, :, :30], image[2, :, 30:] = 255, 255
    mask = torch.ones(40, 60, dtype=torch.int64)
    mask[:, 30:] = 2
    augment = BatchCropResize((20, 24), scale=(0.5, 0.9), flip_p=0.5)
    for _ in range(20):
        images, masks = augment([image], [mask])
        assert masks.dtype == torch.int64 and masks.shape == (1, 20, 24) and images.shape == (1, 3, 20, 24)
        red = images[0, 0] > images[0, 2] + 0.5
        blue = images[0, 2] > images[0, 0] + 0.5
        assert red.any() or blue.any()
        assert bool((masks[0][red] == 1).all()) and bool((masks[0][blue] == 2).all())


def test_gpu_decode_needs_one_jpeg_image_and_a_size():
    with pytest.raises(ScarceError, match="gpu_decode"):
        TFRecordDataModule(train="x", features={"image": "jpeg", "mask": "png"}, gpu_decode=True)
    with pytest.raises(ScarceError, match="gpu_decode"):
        TFRecordDataModule(train="x", features={"image": "png", "mask": "png"}, size=(8, 8), gpu_decode=True)
    with pytest.raises(ScarceError, match="gpu_decode"):
        TFRecordDataModule(train="x", features={"a": "jpeg", "b": "jpeg", "mask": "png"}, size=(8, 8),
                           gpu_decode=True)
