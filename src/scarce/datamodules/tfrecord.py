"""Train on TFRecord shards given by glob, with a feature description: ``TFRecordDataModule``."""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from scarce._errors import ScarceError
from scarce.data.transforms import (BatchCropResize, collate_encoded, decode_jpeg_batch, eval_transform,
                                    train_transform)
from scarce.datamodules.resumable import (ResumableLoaders, ResumableRandomSampler, evaluation_sampler, training_seed,
                                          world_of)
from scarce.shards.decode import FeatureDecoder, is_mask_feature
from scarce.shards.readers import StreamingTFRecordDataset, TFRecordDataset, distributed_rank
from scarce.shards.storage import READ_AHEAD_BYTES

__all__ = ["TFRecordDataModule", "EpochDataLoader"]

SPLITS = ("train", "val", "test")


class EpochDataLoader(DataLoader):
    """A DataLoader that tells its streaming dataset the epoch and the DDP rank before each pass.

    Lightning calls ``set_epoch`` only on samplers; an ``IterableDataset`` gets its epoch here, in the
    main process, before the (non-persistent) workers copy it.
    """

    def __init__(self, *args: Any, epoch_source: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch_source = epoch_source
        self._passes = 0

    def __iter__(self):
        dataset = self.dataset
        if isinstance(dataset, StreamingTFRecordDataset):
            trainer = getattr(self._epoch_source, "trainer", None) if self._epoch_source is not None else None
            epoch = getattr(trainer, "current_epoch", None)
            dataset.set_epoch(self._passes if epoch is None else int(epoch))
            if dataset.rank is None and dataset.world_size is None:
                dataset.rank, dataset.world_size = distributed_rank()
        self._passes += 1
        return super().__iter__()


class TFRecordDataModule(ResumableLoaders, LightningDataModule):
    """Loaders over TFRecord shards: ``{"image": float (B, 3, H, W), "mask": int64 (B, H, W), "label": ...}``.

    Expected layout (any names; globs select the splits; a local path or an fsspec URL such as
    ``s3://bucket/data/train-*.tfrecord``)::

        data/
            train-00000-of-00008.tfrecord [.index]
            ...
            val-00000-of-00001.tfrecord
            train.manifest.json            (optional: record counts, written by `scarce data convert`)

    Args:
        train: Glob (or folder / file) of the training shards.
        val: Glob of the validation shards (optional).
        test: Glob of the test shards (optional).
        features: Feature description, e.g. ``{"image": "jpeg", "mask": "png", "label": "int"}``; see
            :class:`scarce.shards.decode.FeatureDecoder`.
        size: Output ``(H, W)``; ``None`` keeps the stored size (then all images must share it to batch).
        augment: The book's joint augmentation for training (flip, 0.8-1.0 crop, brightness, saturation).
        crop_scale: Crop side fraction range for ``augment``.
        brightness: Additive brightness range for ``augment``.
        saturation: Saturation factor range for ``augment``.
        batch_size: Per device.
        num_workers: DataLoader worker processes.
        streaming: Read front to back (any file, compressed too) with exact rank x worker sharding (training:
            every rank gets ``N // world_size`` records, the last ``N % world_size`` of the epoch's order are left
            out); ``False`` reads by the index (uncompressed files) in
            :class:`~scarce.datamodules.resumable.ResumableRandomSampler` order, dealt over the ranks, which a
            mid-epoch resume continues (a streaming fit restarts the interrupted epoch). Validation and test see
            every record exactly once either way.
        shuffle_buffer: Records in the shuffle buffer per worker (streaming).
        read_ahead: Shards named by URL (``s3://``, ``gs://``, ``https://``), streaming: bytes per request, the
            next block fetched in the background (at most three held per worker). Local files ignore it.
        seed: Shuffle seed; with the epoch, fixes the order.
        skip_corrupt: Skip damaged records (counted in each dataset's ``skip_report``) instead of failing.
        pin_memory: Pin host memory (default: when CUDA is available).
        drop_last: Drop the last partial training batch.
        gpu_decode: Decode the ``"jpeg"`` image on the accelerator (nvJPEG through ``torchvision.io.decode_jpeg``)
            and crop / resize / flip it there: the workers only read and parse, batches carry the encoded bytes.
            A mask (``"mask"``, or ``"png"`` under a key naming a mask) is decoded in the workers (PNG, lossless,
            cheap) and gets the image's crop and flip on the device, resized with nearest neighbour. Needs
            ``size``.
    """

    def __init__(self, train: str | None = None, val: str | None = None, test: str | None = None,
                 features: dict[str, str] | None = None, size: tuple[PositiveInt, PositiveInt] | None = None,
                 augment: bool = True,
                 crop_scale: tuple[float, float] = (0.8, 1.0), brightness: float = 0.15,
                 saturation: tuple[float, float] | None = (0.5, 1.75), batch_size: PositiveInt = 32,
                 num_workers: NonNegativeInt = 2, streaming: bool = True, shuffle_buffer: NonNegativeInt = 1000,
                 read_ahead: PositiveInt = READ_AHEAD_BYTES, seed: int = 0, skip_corrupt: bool = False,
                 pin_memory: bool | None = None, drop_last: bool = True, gpu_decode: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.files = {"train": train, "val": val, "test": test}
        self.features = dict(features or {"image": "jpeg", "label": "int"})
        masks = [k for k, v in self.features.items() if is_mask_feature(k, v)]
        images = [k for k, v in self.features.items() if v in ("jpeg", "png", "image") and k not in masks]
        self.gpu_keys = [k for k in images if self.features[k] == "jpeg"] if gpu_decode else []
        self.mask_keys = masks if gpu_decode else []
        if gpu_decode and (size is None or not self.gpu_keys or self.gpu_keys != images
                           or (masks and (len(images), len(masks)) != (1, 1))):
            raise ScarceError(f"TFRecordDataModule: gpu_decode needs `--data.size` and 'jpeg' images (one image "
                              f"and one mask for segmentation), got features {self.features}; or set "
                              "`--data.gpu_decode false`")
        if gpu_decode:
            self.features.update({k: "encoded" for k in self.gpu_keys})
        self.datasets: dict[str, Any] = {}

    def _transform(self, split: str):
        h = self.hparams
        if self.gpu_keys:
            return None  # done per batch on the device, see on_before_batch_transfer
        size = list(h.size) if h.size is not None else None
        if split == "train" and h.augment:
            return train_transform(size, crop_scale=tuple(h.crop_scale) if h.crop_scale else None,
                                   brightness=h.brightness, saturation=tuple(h.saturation) if h.saturation else None)
        return eval_transform(size)

    def _decoder(self, split: str) -> FeatureDecoder:
        """The feature decoder; training with a random crop defers JPEG decoding so only the window is decoded."""
        h = self.hparams
        window_decode = split == "train" and h.augment and bool(h.crop_scale) and not self.gpu_keys
        return FeatureDecoder(self.features, defer_jpeg=window_decode)

    def _build(self, split: str):
        pattern = self.files[split]
        if pattern is None:
            raise ScarceError(f"TFRecordDataModule: no {split} shards given; set `--data.{split}` to a glob such as "
                              f"'data/{split}-*.tfrecord'")
        h = self.hparams
        if h.streaming:
            _, world = distributed_rank()
            ds = StreamingTFRecordDataset(pattern, decode=self._decoder(split), transform=self._transform(split),
                                          shuffle=split == "train", buffer_size=h.shuffle_buffer, seed=h.seed,
                                          skip_corrupt=h.skip_corrupt, even_ranks=split == "train" and world > 1,
                                          read_ahead=h.read_ahead, batch_size=h.batch_size)
            ds.counts  # count once here, not in every worker  # noqa: B018
            return ds
        return TFRecordDataset(pattern, decode=self._decoder(split), transform=self._transform(split))

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in splits:
            if split not in self.datasets and (self.files[split] is not None or split == "train"):
                self.datasets[split] = self._build(split)

    def _split_loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self._build(split)
        ds = self.datasets[split]
        h = self.hparams
        pin = torch.cuda.is_available() if h.pin_memory is None else h.pin_memory
        drop_last = split == "train" and h.drop_last
        collate = collate_encoded(self.gpu_keys + self.mask_keys) if self.gpu_keys else None
        if isinstance(ds, StreamingTFRecordDataset):
            _, world = distributed_rank()
            if split != "train" and sum(ds.counts) < world:
                # A process without a batch would leave the others waiting in DDP's first evaluation forward.
                raise ScarceError(f"TFRecordDataModule: the {split} shards hold {sum(ds.counts)} records for {world} "
                                  "processes: every process needs at least one (use fewer devices, or more records)")
            # Streaming workers must be re-created each epoch to see the new epoch (set in the main process).
            return EpochDataLoader(ds, batch_size=h.batch_size, num_workers=h.num_workers, pin_memory=pin,
                                   drop_last=drop_last, persistent_workers=False, epoch_source=self,
                                   collate_fn=collate)
        rank, world = world_of(self)
        sampler = (ResumableRandomSampler(len(ds), training_seed(), num_replicas=world, rank=rank) if split == "train"
                   else evaluation_sampler(ds, rank, world, split=f"TFRecordDataModule {split}"))
        loader = DataLoader(ds, batch_size=h.batch_size, sampler=sampler, num_workers=h.num_workers, pin_memory=pin,
                            drop_last=drop_last, persistent_workers=h.num_workers > 0, collate_fn=collate)
        if split == "train":
            self._start_where_saved([loader])
        return loader

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``gpu_decode``: decode (nvJPEG) and augment the encoded images straight on the device."""
        if not self.gpu_keys or not isinstance(batch, dict):
            return batch
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        training = trainer is not None and trainer.training
        h = self.hparams
        augment = BatchCropResize(h.size, tuple(h.crop_scale), train=training and h.augment)
        if self.mask_keys:  # the image and its mask, cropped and flipped together
            (key,), (mask_key,) = self.gpu_keys, self.mask_keys
            masks = [m.to(device, non_blocking=True) for m in batch[mask_key]]
            batch[key], batch[mask_key] = augment(decode_jpeg_batch(batch[key], device), masks)
            return batch
        for key in self.gpu_keys:
            batch[key] = augment(decode_jpeg_batch(batch[key], device))
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._split_loader("train")

    def val_dataloader(self) -> DataLoader | list:
        return self._split_loader("val") if self.files["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._split_loader("test")
