"""Cityscapes in its official layout: trainIds and labelIds, pairing errors, shards round trip."""

import cv2
import numpy as np
import pytest
import torch

from _segmentation_data import make_cityscapes, write_gray
from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.convert import convert_cityscapes as convert
from scarce.data.datasets.cityscapes import Cityscapes, PairingError
from scarce.data.datasets.labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    LABEL_ID_TO_TRAIN_ID,
    LabelMapError,
    colorize,
    label_ids_to_train_ids,
)
from scarce.data.datasets.segmentation_shards import SegmentationShards

# cityscapesScripts/helpers/labels.py, written out: labelId -> trainId.
CITYSCAPES_SCRIPTS = {0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2,
                      12: 3, 13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                      24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18}


def test_label_table_matches_cityscapes_scripts():
    assert LABEL_ID_TO_TRAIN_ID == CITYSCAPES_SCRIPTS
    assert CITYSCAPES_CLASSES == ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                                  "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                                  "bus", "train", "motorcycle", "bicycle")
    assert CITYSCAPES_COLORS[0] == (128, 64, 128) and CITYSCAPES_COLORS[18] == (119, 11, 32)
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    np.testing.assert_array_equal(label_ids_to_train_ids(ids).ravel(), [CITYSCAPES_SCRIPTS[i] for i in range(34)])


def test_colorize():
    rgb = colorize(torch.tensor([[0, 18, 255]]))
    assert rgb.shape == (3, 1, 3) and rgb.dtype == torch.uint8
    assert rgb[:, 0, 0].tolist() == [128, 64, 128] and rgb[:, 0, 2].tolist() == [0, 0, 0]


@pytest.mark.parametrize("label_ids", [False, True], ids=["labelTrainIds", "labelIds"])
def test_reads_every_split(tmp_path, label_ids):
    expected = make_cityscapes(tmp_path, label_ids=label_ids)
    for split in ("train", "val", "test"):
        ds = Cityscapes(tmp_path, split)
        assert len(ds) == 4
        for i, sample in enumerate(ds):
            assert sample["image"].shape == (3, 24, 40) and sample["image"].dtype == torch.float32
            assert 0 <= sample["image"].min() and sample["image"].max() <= 1
            assert sample["mask"].dtype == torch.int64
            np.testing.assert_array_equal(sample["mask"].numpy(), expected[split][i])
    assert ds[0]["name"] == "aachen_000000_000019"


def test_train_ids_are_preferred_over_label_ids(tmp_path):
    expected = make_cityscapes(tmp_path, splits=("val",))
    # A labelIds file beside the trainIds one, with different content: it must not be used.
    gt = min((tmp_path / "gtFine" / "val").glob("*/*_labelTrainIds.png"))
    write_gray(gt.with_name(gt.name.replace("labelTrainIds", "labelIds")), np.zeros((24, 40), np.uint8))
    np.testing.assert_array_equal(Cityscapes(tmp_path, "val")[0]["mask"].numpy(), expected["val"][0])


def test_missing_folder_shows_the_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match="leftImg8bit") as err:
        Cityscapes(tmp_path / "nowhere", "train")
    assert "gtFine_labelTrainIds.png" in str(err.value)
    make_cityscapes(tmp_path, splits=("train",))
    with pytest.raises(DataNotFoundError, match="val"):
        Cityscapes(tmp_path, "val")
    with pytest.raises(ScarceError, match="Valid values"):
        Cityscapes(tmp_path, "training")


def test_image_without_label_and_label_without_image(tmp_path):
    make_cityscapes(tmp_path, splits=("train",))
    label = tmp_path / "gtFine/train/bonn/bonn_000001_000019_gtFine_labelTrainIds.png"
    label.unlink()
    image = tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    image.unlink()
    with pytest.raises(PairingError) as err:
        Cityscapes(tmp_path, "train")
    message = str(err.value)
    assert "1 image(s) without a label" in message and "bonn_000001_000019_leftImg8bit.png" in message
    assert "1 label(s) without an image" in message and "aachen_000000_000019_gtFine_labelTrainIds.png" in message


def test_label_value_outside_the_mapping(tmp_path):
    make_cityscapes(tmp_path, splits=("val",), label_ids=True)
    bad = min((tmp_path / "gtFine" / "val").glob("*/*_labelIds.png"))
    ids = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    ids[0, 0] = 200
    write_gray(bad, ids)
    with pytest.raises(LabelMapError, match=r"\[200\]") as err:
        Cityscapes(tmp_path, "val")[0]
    assert str(bad) in str(err.value)
    # trainIds files may only hold 0..18 and 255.
    make_cityscapes(tmp_path / "t", splits=("val",))
    bad = min((tmp_path / "t" / "gtFine" / "val").glob("*/*_labelTrainIds.png"))
    write_gray(bad, np.full((24, 40), 19, np.uint8))
    with pytest.raises(LabelMapError, match=r"\[19\]"):
        Cityscapes(tmp_path / "t", "val")[0]


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_convert_every_split_to_shards(tmp_path, compression):
    make_cityscapes(tmp_path / "cs", label_ids=True)
    manifests = convert(tmp_path / "cs", tmp_path / "out", shards=2, compression=compression)
    assert sorted(manifests) == ["test", "train", "val"]
    assert all(m["num_records"] == 4 for m in manifests.values())
    for split in ("train", "val", "test"):
        folder, shards = Cityscapes(tmp_path / "cs", split), SegmentationShards(tmp_path / "out", split)
        assert len(shards) == len(folder) == 4
        by_name = {shards[i]["name"]: shards[i] for i in range(len(shards))}
        for sample in folder:
            other = by_name[sample["name"]]
            torch.testing.assert_close(other["image"], sample["image"])
            torch.testing.assert_close(other["mask"], sample["mask"])
    with pytest.raises(DataNotFoundError, match="shards"):
        SegmentationShards(tmp_path / "nothing", "train")
