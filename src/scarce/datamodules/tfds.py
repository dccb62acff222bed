"""Train on a dataset that ``tensorflow_datasets`` prepared, without TensorFlow: ``TFDSDataModule``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from scarce._errors import ScarceError
from scarce.data.datasets.tfds import TFDSDataset
from scarce.data.transforms import eval_transform, train_transform
from scarce.datamodules.resumable import ResumableLoaders

__all__ = ["TFDSDataModule", "TFDSTrainingSample"]


class TFDSTrainingSample:
    """A TFDS sample dict -> the project's training sample, then ``pipeline`` (resize, augmentation, float).

    ``{"image": uint8 Image (C, H, W), "label": int64}`` for a class target, ``{"image", "mask": (H, W)}`` for an
    image target (a segmentation mask: its first channel), ``{"image"}`` without a target.
    """

    def __init__(self, image_key: str, target_key: str | None, target_is_mask: bool, pipeline: Callable) -> None:
        self.image_key, self.target_key, self.target_is_mask = image_key, target_key, target_is_mask
        self.pipeline = pipeline

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = {"image": tv_tensors.Image(sample[self.image_key])}
        if self.target_key is not None:
            target = sample[self.target_key]
            if self.target_is_mask:
                out["mask"] = tv_tensors.Mask(target[0])
            else:
                out["label"] = target
        return self.pipeline(out)

    def __repr__(self) -> str:
        target = f", {self.target_key!r} -> {'mask' if self.target_is_mask else 'label'}" if self.target_key else ""
        return f"{type(self).__name__}({self.image_key!r} -> image{target})\n{self.pipeline!r}"


class TFDSDataModule(ResumableLoaders, LightningDataModule):
    """Loaders over a dataset prepared by ``tensorflow_datasets`` (see :class:`~scarce.data.datasets.TFDSDataset`).

    Batches are ``{"image": float (B, C, H, W) in [0, 1], "label": int64 (B,)}``, or ``"mask"`` int64 ``(B, H, W)``
    when the target is an image feature (a segmentation mask). The training order is resumable
    (:class:`~scarce.datamodules.resumable.ResumableLoaders`). Expected layout::

        data_dir/NAME/[CONFIG/]VERSION/{dataset_info.json, features.json, NAME-SPLIT.tfrecord-0000K-of-0000N}

    Args:
        data_dir: TFDS' ``data_dir`` (``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
        name: ``NAME`` or ``NAME/CONFIG`` (optionally ``:VERSION``), as ``tfds.load``.
        version: the prepared version (``None``: the newest one).
        train_split: split string trained on (``"train"``, ``"train[:90%]"``, ...).
        val_split: split string validated on (``None``: no validation), e.g. ``"train[90%:]"``.
        test_split: split string tested on (``None``: no test loader).
        image_key: the input image feature (``None``: the first supervised key, else ``image``).
        target_key: the target feature (``None``: the second supervised key, else ``label`` when there is one).
        size: ``(H, W)`` every image (and mask) is resized to; needed when the images differ in size.
        augment: the book's augmentation on training samples (flip, 0.8-1.0 crop, brightness, saturation).
        batch_size: samples per batch and device.
        num_workers: DataLoader worker processes.
        pin_memory: pin host memory (GPU training).
    """

    def __init__(self, data_dir: str | None = None, name: str = "", version: str | None = None,
                 train_split: str = "train", val_split: str | None = None, test_split: str | None = "test",
                 image_key: str | None = None, target_key: str | None = None,
                 size: tuple[PositiveInt, PositiveInt] | None = None, augment: bool = False,
                 batch_size: PositiveInt = 32, num_workers: NonNegativeInt = 0, pin_memory: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, TFDSDataset] = {}

    def _dataset(self, stage: str) -> TFDSDataset:
        hp = self.hparams
        split = {"train": hp.train_split, "val": hp.val_split, "test": hp.test_split}[stage]
        if split is None:
            raise ScarceError(f"TFDSDataModule: no {stage} split; set `--data.{stage}_split` (e.g. 'test' or "
                              "'train[90%:]')")
        if not hp.name:
            raise ScarceError("TFDSDataModule: set `--data.name` to the TFDS dataset name (NAME or NAME/CONFIG)")
        if stage not in self.datasets:
            probe = TFDSDataset(hp.data_dir, hp.name, hp.version, split=split, features=[])
            image_key, target_key, is_mask = self._keys(probe)
            if stage == "train" and hp.augment:
                pipeline = train_transform(list(hp.size) if hp.size is not None else None)
            else:
                pipeline = eval_transform(list(hp.size) if hp.size is not None else None)
            self.datasets[stage] = TFDSDataset(
                hp.data_dir, hp.name, hp.version, split=split, features=[k for k in (image_key, target_key) if k],
                transforms=TFDSTrainingSample(image_key, target_key, is_mask, pipeline))
        return self.datasets[stage]

    def _keys(self, dataset: TFDSDataset) -> tuple[str, str | None, bool]:
        """The image and target feature names, and whether the target is a mask; checked against features.json."""
        hp, top = self.hparams, dataset.info.features.children
        image_key = hp.image_key or dataset.image_key
        images = [k for k, f in top.items() if f.kind == "image"]
        if image_key not in top or top[image_key].kind != "image":
            raise ScarceError(f"TFDSDataModule: {dataset.name} has no image feature {image_key!r}; set "
                              f"`--data.image_key` to one of {images}")
        image = top[image_key]
        if image.dtype != "uint8":
            raise ScarceError(f"TFDSDataModule: image feature {image_key!r} is {image.dtype}; training images are "
                              "uint8 (read others with TFDSDataset)")
        if hp.size is None and None in image.shape[:2]:
            raise ScarceError(f"TFDSDataModule: the images of {dataset.name} ({image_key!r}, shape {image.shape}) "
                              "differ in size, so they cannot be batched as they are: set `--data.size H W`")
        target_key = hp.target_key or dataset.target_key
        if target_key is None:
            return image_key, None, False
        if target_key not in top:
            raise ScarceError(f"TFDSDataModule: {dataset.name} has no feature {target_key!r}; set "
                              f"`--data.target_key` to one of {list(top)}")
        target = top[target_key]
        if target.kind == "image":
            if target.shape[-1] != 1:
                raise ScarceError(f"TFDSDataModule: mask feature {target_key!r} has {target.shape[-1]} channels; a "
                                  "mask has one")
            return image_key, target_key, True
        if target.kind not in ("class_label", "tensor") or target.shape not in ((),) or target.dtype == "string":
            raise ScarceError(f"TFDSDataModule: target {target_key!r} is {target.describe()}; expected a ClassLabel, "
                              "an integer scalar or a one-channel mask image")
        return image_key, target_key, False

    def setup(self, stage: str) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for split in wanted:
            if split == "train" or {"val": self.hparams.val_split, "test": self.hparams.test_split}[split]:
                self._dataset(split)

    @property
    def classes(self) -> list[str] | None:
        """The class names of the target ``ClassLabel`` (from the training split), or ``None``."""
        return self._dataset("train").classes

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        return self._training_loader(dataset, drop_last=len(dataset) > self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self._dataset("val"), shuffle=False) if self.hparams.val_split is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
