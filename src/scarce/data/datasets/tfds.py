"""Datasets prepared by ``tensorflow_datasets``, read with scarce's own TFRecord reader: no TensorFlow needed.

The format side (``dataset_info.json``, ``features.json``, split strings, example decoding) is
:mod:`scarce.shards.tfds`; this module turns its numpy samples into torch ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.datasets.vision import StandardTransform

from scarce._errors import ScarceError
from scarce.shards.example import decode_example
from scarce.shards.readers import TFRecordDataset
from scarce.shards.samples import SampleDataset
from scarce.shards.tfds import Feature, TFDSInfo, default_data_dir, find_version_dir, load_info, parse_split

__all__ = ["TFDSDataset", "to_torch"]


def to_torch(value: Any, feature: Feature) -> Any:
    """A value decoded by :meth:`scarce.shards.tfds.Feature.decode` -> torch.

    Images become uint8 (or uint16) ``tv_tensors.Image`` ``(C, H, W)`` (a ``Sequence`` of images ``(N, C, H, W)``),
    numbers tensors of their dtype and shape (``ClassLabel``: int64), ``Text`` stays ``str``, string tensors
    ``bytes`` (lists of them), ``FeaturesDict`` a dict.
    """
    kind = feature.kind
    if kind == "dict":
        return {name: to_torch(value[name], child) for name, child in feature.children.items()}
    if kind == "sequence":
        element = feature.element
        if element.kind == "dict":
            return {name: to_torch(value[name], Feature(kind="sequence", element=child, length=feature.length))
                    for name, child in element.children.items()}
        if element.kind == "image":
            return tv_tensors.Image(torch.from_numpy(value).permute(0, 3, 1, 2))
        if element.kind == "text" or element.dtype == "string":
            return value if element.kind == "text" else value.tolist()
        return torch.from_numpy(np.ascontiguousarray(value))
    if kind == "image":
        return tv_tensors.Image(torch.from_numpy(value).permute(2, 0, 1))
    if kind == "text":
        return value
    if feature.dtype == "string":
        return value.tolist() if isinstance(value, np.ndarray) else value
    return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else \
        torch.tensor(value).to(_TORCH_DTYPES[feature.dtype])


_TORCH_DTYPES = {"bool": torch.bool, "int8": torch.int8, "int16": torch.int16, "int32": torch.int32,
                 "int64": torch.int64, "uint8": torch.uint8, "uint16": torch.uint16, "uint32": torch.uint32,
                 "uint64": torch.uint64, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


class TFDSDataset(SampleDataset):
    """A split of a dataset prepared by ``tensorflow_datasets`` (``tfds.load`` / ``download_and_prepare``).

    Reads the TFRecord shards TFDS wrote, in their order (``tfds.load(..., shuffle_files=False)``'s), through
    their index (built on first use, next to the shards or in ``~/.cache`` when that folder is read-only);
    ``dataset_info.json`` gives the splits and their shards, ``features.json`` the decoding. Expected layout::

        data_dir/
            NAME/
                [CONFIG/]
                VERSION/
                    dataset_info.json
                    features.json
                    NAME-SPLIT.tfrecord-00000-of-0000N

    Args:
        data_dir: TFDS' ``data_dir`` (torchvision's ``root``); ``None``: ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``, as TFDS.
        name: ``"NAME"`` or ``"NAME/CONFIG"``, optionally with ``":VERSION"``, as ``tfds.load`` takes it.
        version: e.g. ``"3.0.2"``; ``None``: the newest version prepared under ``data_dir``.
        split: a split name or a TFDS split string: ``"train[:80%]"``, ``"train+test"``, ``"all"``.
        transform: callable on the input (the first supervised key, else ``image``).
        target_transform: callable on the target (the second supervised key, else ``label``).
        transforms: callable on the whole sample dict (or on ``(input, target)`` with ``as_supervised``).
        features: the top-level features to decode (``None``: all); leaving out images that are not needed
            saves their decoding.
        as_supervised: samples are ``(input, target)`` tuples of the dataset's supervised keys, as
            ``tfds.load(..., as_supervised=True)``.

    A sample is a dict with one entry per feature: ``Image`` -> uint8 (or uint16) ``tv_tensors.Image`` of shape
    ``(C, H, W)``; ``ClassLabel`` -> int64 scalar tensor (names in :attr:`classes` / ``info``); ``Text`` -> ``str``;
    ``Tensor`` / ``Scalar`` / ``BBoxFeature`` -> a tensor of its dtype and shape; ``Sequence`` -> stacked along a
    first axis (``Text``: a list of ``str``); ``FeaturesDict`` -> a nested dict.

    Attributes:
        info: the :class:`~scarce.shards.tfds.TFDSInfo` (splits, features, supervised keys).
        classes: the class names of the target ``ClassLabel`` (``None`` when it has none).

    Raises:
        DataNotFoundError: no such dataset, config, version (the message lists what is there) or shard.
        ScarceError: an unknown split (listing the valid ones); a shard whose record count differs from
            ``dataset_info.json``.
        FeatureError: a feature type scarce does not read, naming it.
    """

    def __init__(self, data_dir: str | Path | None, name: str, version: str | None = None, split: str = "train",
                 transform: Callable | None = None, target_transform: Callable | None = None,
                 transforms: Callable | None = None, features: Sequence[str] | None = None,
                 as_supervised: bool = False) -> None:
        folder = find_version_dir(data_dir, name, version)
        self.info: TFDSInfo = load_info(folder)
        self.as_supervised = as_supervised
        supervised = self.info.supervised_keys
        top = self.info.features.children
        if as_supervised and supervised is None:
            raise ScarceError(f"{self.info.name}: as_supervised=True, but {folder / 'dataset_info.json'} declares no "
                              "supervised keys; read the sample dicts (as_supervised=False)")
        self.image_key = supervised[0] if supervised else "image"
        self.target_key = supervised[1] if supervised else ("label" if "label" in top else None)
        if as_supervised:  # the pair is all that is returned: decode only it (and what was asked for)
            features = [*(features or []), *(k for k in supervised if k not in (features or []))]
        if features is not None:
            unknown = [k for k in features if k not in top]
            if unknown:
                raise ScarceError(f"{self.info.name}: no feature {unknown[0]!r}; it has {list(top)}")
        self.features = Feature(kind="dict", children={k: top[k] for k in features}) \
            if features is not None else self.info.features
        root = data_dir if data_dir is not None else default_data_dir()
        super().__init__(root, split, transforms, transform, target_transform)
        if as_supervised and (transform is not None or target_transform is not None):
            # torchvision's reading for (input, target) samples: transforms(input, target)
            self.transforms = StandardTransform(transform, target_transform)
        self.name = self.info.name if not self.info.config else f"{self.info.name}/{self.info.config}"
        self.version = self.info.version
        target = top.get(self.target_key) if self.target_key else None
        self.classes = list(target.names) if target is not None and target.names is not None else None
        self._read_split(split)

    def _read_split(self, split: str) -> None:
        slices = parse_split(split, self.info.splits)
        used = list(dict.fromkeys(s.split for s in slices))
        files = [f for name in used for f in self.info.splits[name].files]
        self.records = TFRecordDataset(files)
        # Each shard must hold what dataset_info.json says: a shorter one is a damaged or half-copied dataset.
        base, bases = 0, {}
        for name in used:
            info = self.info.splits[name]
            bases[name] = base
            for path, expected in zip(info.files, info.shard_lengths):
                found = len(self.records.offsets[self.records.files.index(path)])
                if found != expected:
                    raise ScarceError(f"{path}: {found} records, but {Path(path).parent / 'dataset_info.json'} says "
                                      f"{expected}: the shard is damaged or incomplete (prepare or copy it again)")
            base += info.num_examples
        self.indices = np.concatenate([np.arange(bases[s.split] + s.start, bases[s.split] + s.stop, dtype=np.int64)
                                       for s in slices]) if slices else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def example(self, index: int) -> dict[str, Any]:
        """Sample ``index`` as numpy values (what ``tfds.as_numpy`` gives, but ``Text`` as ``str``), untransformed."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples of {self.name} {self.split!r}")
        record = int(self.indices[index])
        path, data = self.records.raw(record)
        where = f"{path}: record {record - self.records.cumulative[self.records.files.index(path)]}"
        return self.features.decode(decode_example(data, path), where=where)

    def __getitem__(self, index: int) -> Any:
        sample = to_torch(self.example(index), self.features)
        if self.as_supervised:
            pair = sample[self.image_key], sample[self.target_key]
            return self.transforms(*pair) if self.transforms is not None else pair
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        return "\n".join([f"Name: {self.name}", f"Version: {self.version}", f"Split: {self.split}"])

