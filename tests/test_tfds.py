"""Datasets prepared by real ``tensorflow_datasets``, read by scarce without TensorFlow.

``tests/fixtures/tfds/`` was written by ``tests/fixtures/make_tfds_fixture.py`` (TensorFlow 2.21,
tensorflow-datasets 4.9): the ``tiny_shapes`` dataset (every feature type scarce reads, 3 shards per split) and
``manifest.json``, what TFDS itself decoded from it. Every value is compared.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scarce._errors import CorruptRecordError, DataNotFoundError, FeatureError, ScarceError
from scarce.data.datasets.tfds import TFDSDataset
from scarce.shards.tfds import find_version_dir, load_info, parse_split

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tfds"
MANIFEST = json.loads((FIXTURE / "manifest.json").read_text())
NAME = "tiny_shapes"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A copy of the fixture (reading builds index files next to the shards; the repository stays clean)."""
    out = tmp_path_factory.mktemp("tfds")
    shutil.copytree(FIXTURE / NAME, out / NAME)
    return out


def _compare(expected, got, where: str) -> None:
    """One feature value (numpy, from ``TFDSDataset.example``) against the manifest's description of TFDS' value."""
    if isinstance(expected, dict) and "dtype" not in expected:
        assert sorted(got) == sorted(expected), where
        for key in expected:
            _compare(expected[key], got[key], f"{where}/{key}")
    elif isinstance(expected, str):
        assert got == expected, where
    elif isinstance(expected, list):  # Text sequences
        assert got == expected, where
    else:
        array = np.asarray(got)
        assert str(array.dtype) == expected["dtype"], where
        assert list(array.shape) == expected["shape"], where
        if "sha256" in expected:
            assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == expected["sha256"], where
        else:
            assert array.reshape(-1).tolist() == expected["values"], where


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_value_equals_what_tfds_decoded(data_dir, split):
    dataset = TFDSDataset(data_dir, NAME, split=split)
    expected = MANIFEST["examples"][split]
    assert len(dataset) == len(expected) == MANIFEST["splits"][split]["num_examples"]
    for i, example in enumerate(expected):
        _compare(example, dataset.example(i), f"{split}[{i}]")


def test_info_splits_classes_and_supervised_keys(data_dir):
    info = load_info(find_version_dir(data_dir, NAME))
    assert (info.name, info.version) == (MANIFEST["name"], MANIFEST["version"])
    assert {name: list(s.shard_lengths) for name, s in info.splits.items()} == \
        {name: s["shard_lengths"] for name, s in MANIFEST["splits"].items()}
    assert all(len(s.files) == 3 for s in info.splits.values())
    assert list(info.supervised_keys) == MANIFEST["supervised_keys"]
    assert list(info.features.children["label"].names) == MANIFEST["class_names"]["label"]
    objects = info.features.children["objects"].element.children
    assert list(objects["material"].names) == MANIFEST["class_names"]["objects/material"]
    assert info.features.children["heatmap"].encoding == "zlib"


@pytest.mark.parametrize("spec", sorted(MANIFEST["split_strings"]))
def test_split_strings_select_what_tfds_selects(data_dir, spec):
    dataset = TFDSDataset(data_dir, NAME, split=spec, features=["meta"])
    assert [int(dataset.example(i)["meta"]["id"]) for i in range(len(dataset))] == MANIFEST["split_strings"][spec]


def test_torch_samples_transforms_and_supervised_pairs(data_dir):
    dataset = TFDSDataset(data_dir, NAME, "1.0.0", split="train")
    sample = dataset[0]
    numpy_sample = dataset.example(0)
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape[0] == 3
    assert torch.equal(sample["image"].permute(1, 2, 0), torch.from_numpy(numpy_sample["image"]))
    assert sample["mask"].shape[0] == 1 and sample["depth"].dtype == torch.uint16
    assert sample["label"].dtype == torch.int64 and sample["label"].ndim == 0
    assert sample["raw"].dtype == torch.uint64 and sample["heatmap"].dtype == torch.float16
    assert isinstance(sample["caption"], str) and isinstance(sample["tags"], list)
    assert sample["objects"]["bbox"].shape[1:] == (4,) and sample["keypoints"].shape == (3, 2)
    assert dataset.classes == MANIFEST["class_names"]["label"]

    shapes = TFDSDataset(data_dir, NAME, split="train", features=["image", "label"],
                         transform=lambda image: image.float() / 255, target_transform=lambda y: y + 10)
    first = shapes[0]
    assert sorted(first) == ["image", "label"] and first["image"].dtype == torch.float32
    assert int(first["label"]) == int(sample["label"]) + 10
    image, label = TFDSDataset(data_dir, NAME, split="train", as_supervised=True,
                               target_transform=lambda y: -y)[0]
    assert torch.equal(image, sample["image"]) and int(label) == -int(sample["label"])
    text = repr(shapes)
    for part in ("Dataset TFDSDataset", "Number of datapoints: 10", f"Root location: {data_dir}",
                 "Name: tiny_shapes", "Version: 1.0.0", "Split: train", "Target transform (label)"):
        assert part in text, text
    with pytest.raises(ScarceError, match="either `transforms`"):
        TFDSDataset(data_dir, NAME, transform=abs, transforms=abs)


def test_versions_and_missing_parts_are_one_line_errors(data_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_dir / NAME / "1.0.0", root / NAME / "0.9.0")
    shutil.copytree(data_dir / NAME / "1.0.0", root / NAME / "1.0.0")
    (root / NAME / "1.0.0" / "dataset_info.json").unlink()  # an unfinished prepare: not a version
    assert find_version_dir(root, NAME).name == "0.9.0"
    assert find_version_dir(data_dir, f"{NAME}:1.0.0").name == "1.0.0"
    cases = [
        (lambda: TFDSDataset(tmp_path / "nowhere", NAME), DataNotFoundError, "is not a folder"),
        (lambda: TFDSDataset(data_dir, "mnist"), DataNotFoundError, "no dataset 'mnist'.*found: tiny_shapes"),
        (lambda: TFDSDataset(data_dir, NAME, "2.0.0"), DataNotFoundError, r"no version '2.0.0' \(found: 1.0.0\)"),
        (lambda: TFDSDataset(data_dir, NAME, split="validation"), ScarceError,
         "Unknown value 'validation' for split. Valid values are {'train', 'test'}"),
        (lambda: TFDSDataset(data_dir, NAME, split="train[:200]"), ScarceError, "out of range for 10 examples"),
        (lambda: TFDSDataset(data_dir, NAME, features=["nope"]), ScarceError, "no feature 'nope'"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message) as info:
            make()
        assert "\n" not in str(info.value).split("Expected:")[0]


def test_unsupported_feature_damaged_shard_and_missing_shard(data_dir, tmp_path):
    version = tmp_path / NAME / "1.0.0"
    shutil.copytree(data_dir / NAME / "1.0.0", version)
    for index in version.glob("*.index"):
        index.unlink()
    spec = json.loads((version / "features.json").read_text())
    good = json.dumps(spec)
    spec["featuresDict"]["features"]["clip"] = {
        "pythonClassName": "tensorflow_datasets.core.features.video_feature.Video",
        "video": {"shape": {"dimensions": ["-1", "8", "8", "3"]}, "dtype": "uint8", "encodingFormat": "png"}}
    (version / "features.json").write_text(json.dumps(spec))
    with pytest.raises(FeatureError, match="feature 'clip': TFDS feature Video .'video'. is not supported"):
        TFDSDataset(tmp_path, NAME)
    (version / "features.json").write_text(good)

    shard = sorted(version.glob(f"{NAME}-train.tfrecord-*"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # cut mid-record: a half-copied shard
    with pytest.raises(CorruptRecordError, match=shard.name):
        TFDSDataset(tmp_path, NAME, split="train")
    shard.unlink()
    with pytest.raises(DataNotFoundError, match=f"{shard.name}: missing .1 of 3 shard.s. of split 'train'"):
        TFDSDataset(tmp_path, NAME, split="train")


def test_parse_split_rounds_percent_as_tfds():
    info = load_info(FIXTURE / NAME / "1.0.0")
    part = parse_split("train[33%:67%]", info.splits)[0]
    assert (part.start, part.stop) == (3, 7)  # round(3.3), round(6.7)
    with pytest.raises(ScarceError, match="cannot read"):
        parse_split("train[:5]]", info.splits)


def test_data_inspect_and_dump_read_tfds_folders(data_dir, tmp_path, capsys):
    from scarce.data.cli import main as data_main

    assert data_main(["inspect", str(data_dir / NAME), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "1.0.0" and summary["splits"]["train"]["examples"] == 10
    assert summary["splits"]["train"]["shards"] == 3
    assert summary["features"]["objects/material"].startswith("Sequence(ClassLabel(num_classes=4, names=['wood'")
    assert data_main(["dump", str(data_dir / NAME / "1.0.0"), "--split", "train[-3:]+test[:1]", "--limit", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["meta"]["id"] for line in lines] == MANIFEST["split_strings"]["train[-3:]+test[:1]"][:3]
    for line, expected in zip(lines, MANIFEST["examples"]["train"][-3:]):
        assert line["caption"] == expected["caption"] and line["label"] == expected["label"]["values"][0]
        assert line["image"].startswith("b64:") and line["raw"] == [[0, 1], expected["raw"]["values"][2:]]

    broken = tmp_path / NAME / "1.0.0"
    shutil.copytree(data_dir / NAME / "1.0.0", broken)
    shard = sorted(broken.glob(f"{NAME}-test.tfrecord-*"))[0]
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF  # one flipped byte inside the first record's data: its CRC no longer matches
    shard.write_bytes(bytes(data))
    assert data_main(["inspect", str(broken)]) == 1
    assert f"{shard}: corrupted record at byte 12" in capsys.readouterr().err  # where its data starts


def test_datamodule_batches_labels_and_masks(data_dir):
    from scarce.datamodules.tfds import TFDSDataModule

    dm = TFDSDataModule(str(data_dir), NAME, train_split="train[:80%]", val_split="train[80%:]", size=(16, 16),
                        augment=True, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (4,)
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    val = [b for b in dm.val_dataloader()]
    assert sum(len(b["label"]) for b in val) == 2 and dm.classes == MANIFEST["class_names"]["label"]

    masks = TFDSDataModule(str(data_dir), NAME, target_key="mask", size=(12, 12), batch_size=5)
    masks.setup("test")
    batch = next(iter(masks.test_dataloader()))
    assert batch["mask"].shape == (5, 12, 12) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3}

    for kwargs, message in [({}, r"differ in size, so they cannot be batched as they are: set `--data.size H W`"),
                            ({"size": (8, 8), "image_key": "label"}, "no image feature 'label'; set "
                             r"`--data.image_key` to one of \['depth', 'image', 'mask', 'photo'\]"),
                            ({"size": (8, 8), "target_key": "caption"}, "target 'caption' is Text()")]:
        with pytest.raises(ScarceError, match=message):
            TFDSDataModule(str(data_dir), NAME, **kwargs).setup("fit")


def test_a_record_that_disagrees_with_features_json_is_a_named_error():
    from scarce.shards.example import read_records

    info = load_info(FIXTURE / NAME / "1.0.0")
    path = info.splits["test"].files[0]
    example = next(read_records(path))
    for key, value, message in [("caption", [3], r"feature 'caption' \(Text\(\)\) holds int values, expected bytes"),
                                ("embedding", [0.5] * 5, r"feature 'embedding': 5 values do not fit shape \(2, 3\)"),
                                ("counts", [1.5], "feature 'counts': holds float values, features.json says int32"),
                                ("meta/id", None, "feature 'meta/id' is missing from the record")]:
        broken = dict(example)
        if value is None:
            del broken[key]
        else:
            broken[key] = value
        with pytest.raises(FeatureError, match=message):
            info.features.decode(broken, where=f"{path}: record 0")
