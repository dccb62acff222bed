"""torchvision's dataset conventions for scarce's dict samples: the transform trio and the common base class.

Every scarce dataset yields a sample dict (``{"image": ..., "label": ...}`` or ``{"image": ..., "mask": ...}``) and
takes torchvision's three transform arguments (``torchvision.datasets.VisionDataset``):

* ``transform``: called on the input, ``sample["image"]``;
* ``target_transform``: called on the target, ``sample["label"]`` or ``sample["mask"]`` (the dataset's
  ``target_key``);
* ``transforms``: called on the whole sample dict (joint image + mask augmentation, such as
  :func:`scarce.data.transforms.train_transform`); exclusive with the other two, as in torchvision.

:class:`SampleDataset` is ``VisionDataset`` with that reading of the three, and its ``__repr__`` (name, number of
datapoints, root, split, transforms). It lives here, in the layer under both :mod:`scarce.data` and
:mod:`scarce.render`, so that datasets of both share it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets.vision import VisionDataset

from scarce._errors import ScarceError
from scarce.shards.storage import is_url

__all__ = ["SampleDataset", "SampleTransforms"]


class SampleTransforms:
    """``transform`` on ``sample[image_key]`` and ``target_transform`` on ``sample[target_key]``: torchvision's
    ``StandardTransform`` for dict samples. Returns a new dict (the dataset's own is not changed in place)."""

    def __init__(self, transform: Callable | None = None, target_transform: Callable | None = None, *,
                 image_key: str = "image", target_key: str | None = "label") -> None:
        if target_transform is not None and target_key is None:
            raise ScarceError("target_transform given, but this dataset's samples have no target")
        self.transform, self.target_transform = transform, target_transform
        self.image_key, self.target_key = image_key, target_key

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample = dict(sample)
        if self.transform is not None:
            sample[self.image_key] = self.transform(sample[self.image_key])
        if self.target_transform is not None:
            sample[self.target_key] = self.target_transform(sample[self.target_key])
        return sample

    def __repr__(self) -> str:
        body = [type(self).__name__]
        for head, fn in ((f"Transform ({self.image_key}): ", self.transform),
                         (f"Target transform ({self.target_key}): ", self.target_transform)):
            if fn is not None:
                lines = repr(fn).splitlines()
                body += [head + lines[0]] + [" " * len(head) + line for line in lines[1:]]
        return "\n".join(body)


class SampleDataset(VisionDataset):
    """``torchvision.datasets.VisionDataset`` for dict samples (see the module docstring).

    Subclasses set ``image_key`` / ``target_key`` (class attributes, or in ``__init__`` before calling this one),
    build their sample dict in ``__getitem__`` and return ``self.apply_transforms(sample)``.

    Args:
        root: the dataset's folder (``None`` for generated data: rendered scenes, blobs, the offline MNIST copy).
        split: the split, shown by ``repr``.
        transforms: callable on the sample dict.
        transform: callable on ``sample[image_key]``.
        target_transform: callable on ``sample[target_key]``.

    Raises:
        ScarceError: ``transforms`` together with ``transform`` / ``target_transform``.
    """

    image_key: str = "image"
    target_key: str | None = "label"

    def __init__(self, root: str | Path | None, split: str | None = None, transforms: Callable | None = None,
                 transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        if transforms is not None and (transform is not None or target_transform is not None):
            raise ScarceError(f"{type(self).__name__}: give either `transforms` (called on the sample dict) or "
                              "`transform` / `target_transform` (called on its image / target), not both")
        # A URL (s3://, gs://, https://) stays a string: Path would fold its "//".
        super().__init__(None if root is None else root if is_url(root) else Path(root).expanduser())
        self.split = split
        self.transform, self.target_transform = transform, target_transform
        if transform is not None or target_transform is not None:
            transforms = SampleTransforms(transform, target_transform, image_key=self.image_key,
                                          target_key=self.target_key)
        self.transforms = transforms

    def apply_transforms(self, sample: dict[str, Any]) -> Any:
        """The sample after the dataset's transforms (itself when there are none)."""
        return self.transforms(sample) if self.transforms is not None else sample

    def extra_repr(self) -> str:
        return f"Split: {self.split}" if self.split is not None else ""

    def __repr__(self) -> str:
        # VisionDataset's, with every line of a multi-line transforms repr indented (it indents only the first).
        body = [f"Number of datapoints: {len(self)}"]
        if self.root is not None:
            body.append(f"Root location: {self.root}")
        body += self.extra_repr().splitlines()
        if self.transforms is not None:
            body += repr(self.transforms).splitlines()
        return "\n".join([f"Dataset {type(self).__name__}"] + [" " * self._repr_indent + line for line in body])
