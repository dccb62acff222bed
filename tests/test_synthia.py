"""SYNTHIA-RAND-CITYSCAPES and SYNTHIA-SEQS: 16-bit labels, both mappings, layout detection, splits, errors."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from _segmentation_data import make_synthia, synthia_label_png, write_rgb
from scarce._errors import DataNotFoundError
from scarce.data.datasets.cityscapes import PairingError
from scarce.data.datasets.labels import SYNTHIA_RAND_TO_TRAIN_ID, SYNTHIA_SEQS_TO_TRAIN_ID, LabelMapError
from scarce.data.convert import convert_synthia as convert
from scarce.data.datasets.segmentation_shards import SegmentationShards
from scarce.data.datasets.synthia import SYNTHIA, detect_layout, read_synthia_label

# The tables of the design notes (book's synthia_utils.py), written out id by id.
SEQS = {0: 255, 1: 10, 2: 2, 3: 0, 4: 1, 5: 4, 6: 8, 7: 5, 8: 13, 9: 7, 10: 11, 11: 18, 12: 0, 13: 255, 14: 255,
        15: 6}
RAND = {**SEQS, 12: 17, 16: 9, 17: 12, 18: 14, 19: 15, 20: 16, 21: 3, 22: 0}


def test_both_mappings_id_by_id():
    assert SYNTHIA_SEQS_TO_TRAIN_ID == SEQS
    assert SYNTHIA_RAND_TO_TRAIN_ID == RAND


@pytest.mark.parametrize(("layout", "table"), [("seqs", SEQS), ("rand", RAND)])
def test_every_id_through_a_16bit_label_png(tmp_path, layout, table):
    ids = np.array([sorted(table)], dtype=np.uint16)
    path = tmp_path / "label.png"
    synthia_label_png(path, ids, instance_ids=np.full(ids.shape, 4000, np.uint16))
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (1, len(table), 3)
    # Pillow reduces 48-bit PNGs to 8 bits per channel: the class ids would be lost.
    assert not np.array_equal(np.asarray(Image.open(path))[..., 0], ids[0].astype(np.uint8))
    np.testing.assert_array_equal(read_synthia_label(path, layout)[0], [table[i] for i in sorted(table)])


def test_layout_detected_per_sequence(tmp_path):
    make_synthia(tmp_path)
    assert detect_layout(tmp_path / "RAND_CITYSCAPES") == "rand"
    assert detect_layout(tmp_path / "SYNTHIA-SEQS-04-FALL") == "seqs"
    ds = SYNTHIA(tmp_path, "all")
    assert len(ds) == 3 + 2 * 2
    layouts = {item[0].relative_to(tmp_path).parts[0]: item[2] for item in ds.items}
    assert layouts == {"RAND_CITYSCAPES": "rand", "SYNTHIA-SEQS-04-FALL": "seqs"}
    # Id 12 is motorcycle in RAND and lane marking (road) in SEQS.
    rand = ds[0]
    raw = cv2.imread(str(ds.items[0][1]), cv2.IMREAD_UNCHANGED)[..., 2]
    assert (rand["mask"][torch.from_numpy(raw == 12)] == 17).all()
    seqs_index = next(i for i, item in enumerate(ds.items) if item[2] == "seqs")
    raw = cv2.imread(str(ds.items[seqs_index][1]), cv2.IMREAD_UNCHANGED)[..., 2]
    assert (ds[seqs_index]["mask"][torch.from_numpy(raw == 12)] == 0).all()
    assert rand["image"].shape == (3, 24, 80) and rand["name"] == "RAND_CITYSCAPES_0000000"
    assert ds[seqs_index]["name"] == "SYNTHIA-SEQS-04-FALL_Stereo_Left_Omni_F_000000"
    # A single sequence folder works as the root too.
    assert len(SYNTHIA(tmp_path / "RAND_CITYSCAPES", "all")) == 3


def test_splits_partition_each_camera_sequence(tmp_path):
    make_synthia(tmp_path, rand_frames=10)
    train, val, every = (SYNTHIA(tmp_path, s, val_fraction=0.2) for s in ("train", "val", "all"))
    names = lambda d: {d.name(i) for i in range(len(d))}
    assert names(train) | names(val) == names(every) and not names(train) & names(val)
    # The tail of each sequence is held out: RAND frames 8 and 9, and the last frame of each SEQS camera.
    assert sorted(n for n in names(val) if n.startswith("RAND")) == ["RAND_CITYSCAPES_0000008",
                                                                       "RAND_CITYSCAPES_0000009"]
    assert len(val) == 2 + 2


def test_missing_folders_show_the_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match="RAND_CITYSCAPES"):
        SYNTHIA(tmp_path / "nowhere")
    (tmp_path / "empty" / "something").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="Stereo_Left"):
        SYNTHIA(tmp_path / "empty")
    make_synthia(tmp_path / "s")
    for p in (tmp_path / "s" / "RAND_CITYSCAPES" / "GT" / "LABELS").glob("*.png"):
        p.unlink()
    (tmp_path / "s" / "RAND_CITYSCAPES" / "GT" / "LABELS").rmdir()
    with pytest.raises(DataNotFoundError, match="GT/LABELS"):
        SYNTHIA(tmp_path / "s")


def test_image_without_label_and_label_without_image(tmp_path):
    make_synthia(tmp_path)
    seq = tmp_path / "SYNTHIA-SEQS-04-FALL"
    (seq / "GT" / "LABELS" / "Stereo_Left" / "Omni_F" / "000001.png").unlink()
    synthia_label_png(seq / "GT" / "LABELS" / "Stereo_Left" / "Omni_F" / "000007.png", np.zeros((2, 2), np.uint16))
    with pytest.raises(PairingError) as err:
        SYNTHIA(tmp_path)
    message = str(err.value)
    assert "image(s) without a label" in message and "RGB/Stereo_Left/Omni_F/000001.png" in message
    assert "label(s) without an image" in message and "000007.png" in message


@pytest.mark.parametrize(("seq", "value"), [("RAND_CITYSCAPES", 23), ("SYNTHIA-SEQS-04-FALL", 16)])
def test_label_value_outside_the_mapping(tmp_path, seq, value):
    make_synthia(tmp_path)
    ds = SYNTHIA(tmp_path, "all")
    index = next(i for i, item in enumerate(ds.items) if item[0].relative_to(tmp_path).parts[0] == seq)
    label = ds.items[index][1]
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)[..., 2]
    ids[0, :3] = value
    synthia_label_png(label, ids)
    with pytest.raises(LabelMapError, match=rf"\[{value}\]") as err:
        ds[index]
    assert str(label) in str(err.value)


def test_convert_to_gzip_shards_and_back(tmp_path):
    make_synthia(tmp_path / "synthia")
    write_rgb(tmp_path / "synthia" / "README.png", np.zeros((2, 2, 3), np.uint8))  # stray file at the root
    manifests = convert(tmp_path / "synthia", tmp_path / "out", shards=2, compression="gzip")
    assert {k: m["num_records"] for k, m in manifests.items()} == {"train": 4, "val": 3}
    for split in ("train", "val"):
        folder, shards = SYNTHIA(tmp_path / "synthia", split), SegmentationShards(tmp_path / "out", split)
        by_name = {s["name"]: s for s in shards}
        assert sorted(by_name) == sorted(folder.name(i) for i in range(len(folder)))
        for sample in folder:
            torch.testing.assert_close(by_name[sample["name"]]["mask"], sample["mask"])
            torch.testing.assert_close(by_name[sample["name"]]["image"], sample["image"])
