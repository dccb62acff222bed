"""torchvision's dataset conventions across scarce's datasets: ``root`` / ``split``, the transform trio on dict
samples (``transform`` on the image, ``target_transform`` on the label or mask, ``transforms`` on the sample) and
``VisionDataset``'s ``repr``."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.utils.data import Dataset
from torchvision.datasets import VisionDataset

from scarce._errors import ScarceError
from scarce.data import datasets
from scarce.render.dataset import RenderedDataset
from scarce.render.segmentation import RenderedSegmentation, RenderedSegmentationShards

DATASETS = [getattr(datasets, name) for name in datasets.__all__] + [RenderedDataset, RenderedSegmentation,
                                                                      RenderedSegmentationShards]


@pytest.mark.parametrize("cls", DATASETS, ids=lambda c: c.__name__)
def test_every_dataset_is_a_vision_dataset_with_the_transform_trio(cls):
    assert issubclass(cls, VisionDataset) and issubclass(cls, Dataset)
    parameters = inspect.signature(cls).parameters
    assert {"transform", "target_transform", "transforms"} <= set(parameters), cls
    if cls not in (datasets.Blobs, RenderedDataset, RenderedSegmentation):  # generated, not read from a folder
        first = next(iter(parameters))
        assert first in ("root", "data_dir") and "split" in parameters, cls


def test_transform_target_transform_and_transforms_on_dict_samples():
    plain = datasets.Blobs("target", "val", seed=3)
    point, label = plain[5]["image"], plain[5]["label"]
    parts = datasets.Blobs("target", "val", seed=3, transform=lambda x: x * 2, target_transform=lambda y: y + 7)
    assert torch.equal(parts[5]["image"], point * 2) and int(parts[5]["label"]) == int(label) + 7
    whole = datasets.Blobs("target", "val", seed=3, transforms=lambda s: {"x": s["image"].sum()})
    assert whole[5] == {"x": point.sum()}
    assert torch.equal(plain[5]["image"], point), "a transform must not change the dataset's own samples"
    with pytest.raises(ScarceError, match="either `transforms`.*or `transform` / `target_transform`"):
        datasets.Blobs(transform=abs, transforms=abs)


def test_repr_names_the_dataset_its_size_root_split_and_transforms(tmp_path):
    text = repr(datasets.MNIST(split="val", limit=4, target_transform=torch.nn.Identity()))
    assert text.splitlines()[0] == "Dataset MNIST"
    for part in ("Number of datapoints: 4", "Split: val", "offline copy", "Target transform (label): Identity()"):
        assert part in text, text
    rendered = repr(RenderedSegmentation("synthetic-flat", num_samples=3, seed=2, size=(32, 32)))
    for part in ("Dataset RenderedSegmentation", "Number of datapoints: 3", "Preset: synthetic-flat", "Seed: 2"):
        assert part in rendered, rendered
    assert "Root location" not in rendered  # rendered on the fly: no folder
