"""The book's toy domain-adaptation problem (notebook 7.5): two Gaussian blobs per domain in 3-D."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from scarce.data.datasets._utils import verify_str_arg
from scarce.shards.samples import SampleDataset

__all__ = ["Blobs", "BLOB_DOMAINS"]

# domain -> (class centres, std, samples per class for each split). The book's numbers: source 500 per class,
# target 400 unlabelled for training (200 per class) and 200 per class for testing; validation draws as many
# as testing from an independent stream.
BLOB_DOMAINS = {
    "source": {"centres": ((0.0, 0.0, 0.0), (2.0, 4.0, 4.0)), "std": 0.5, "per_class": {"train": 500, "val": 200, "test": 200}},
    "target": {"centres": ((6.0, 3.0, 3.0), (7.0, 6.0, 7.0)), "std": 1.0, "per_class": {"train": 200, "val": 200, "test": 200}},
}
_STREAMS = {("source", "train"): 0, ("source", "val"): 1, ("source", "test"): 2,
            ("target", "train"): 3, ("target", "val"): 4, ("target", "test"): 5}


class Blobs(SampleDataset):
    """Points drawn from isotropic Gaussians, one per class, with the book's centres.

    Generated in memory (nothing on disk), a pure function of ``(domain, split, seed)``.

    Args:
        domain: ``"source"`` (centres [0,0,0] and [2,4,4], std 0.5) or ``"target"`` (centres [6,3,3] and
            [7,6,7], std 1).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: Seed of the draw.
        transform: Applied to the point (``image``).
        target_transform: Applied to the label.
        transforms: Applied to the sample dict (instead of the two above).

    A sample is ``{"image": float32 (3,), "label": int64}``; the point is stored under ``image`` so that
    the same training code serves pictures and points.
    """

    classes = ["0", "1"]

    def __init__(self, domain: str = "source", split: str = "train", seed: int = 0, transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable[[dict], dict] | None = None) -> None:
        super().__init__(None, verify_str_arg(split, "split", ("train", "val", "test")), transforms, transform,
                         target_transform)
        self.domain = verify_str_arg(domain, "domain", tuple(BLOB_DOMAINS))
        self.seed = seed
        spec = BLOB_DOMAINS[domain]
        n = spec["per_class"][split]
        rng = np.random.default_rng([seed, _STREAMS[(domain, split)]])
        points = [rng.normal(loc=c, scale=spec["std"], size=(n, 3)) for c in spec["centres"]]
        self.data = torch.from_numpy(np.concatenate(points).astype(np.float32))
        self.targets = torch.arange(len(spec["centres"])).repeat_interleave(n)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        sample = {"image": self.data[index], "label": self.targets[index]}
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        return f"Domain: {self.domain}\n{super().extra_repr()}\nSeed: {self.seed}"
