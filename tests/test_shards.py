"""The shards layer: the image codec, the indexed reader, the schemas (its place in the import graph:
tests/test_architecture.py)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from scarce._errors import FeatureError, ScarceError
from scarce.shards.example import encode_example
from scarce.shards.images import decode_image, decode_mask, encode_png
from scarce.shards.readers import TFRecordDataset
from scarce.shards.schemas import (
    decode_imagefolder,
    decode_segmentation,
    decode_segmentation_mask,
    encode_imagefolder,
    encode_segmentation,
)
from scarce.shards.writer import write_shards

# --------------------------------------------------------------------------------------------- image codec


def _pil_png(array: np.ndarray, mode: str, palette: bool = False) -> bytes:
    img = Image.fromarray(array, mode=mode)
    if palette:
        img = img.convert("P")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_png_round_trips_images_and_masks():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ids = rng.integers(0, 19, (5, 7), dtype=np.uint8)
    inst = rng.integers(0, 60000, (5, 7)).astype(np.uint16)
    assert np.array_equal(decode_image(encode_png(rgb)), rgb)
    assert np.array_equal(decode_image(encode_png(rgb, compression=1)), rgb)
    assert encode_png(rgb) == encode_png(rgb.copy())  # deterministic bytes
    assert np.array_equal(decode_mask(encode_png(ids)), ids) and decode_mask(encode_png(ids)).dtype == np.uint8
    assert np.array_equal(decode_mask(encode_png(inst)), inst) and decode_mask(encode_png(inst)).dtype == np.uint16
    assert np.array_equal(decode_image(encode_png(ids)), np.repeat(ids[..., None], 3, axis=2))  # grey -> RGB


def test_masks_in_other_png_modes():
    ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
    grey_as_rgb = _pil_png(np.repeat(ids[..., None], 3, axis=2), "RGB")
    assert np.array_equal(decode_mask(grey_as_rgb), ids)
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette([v for i in range(256) for v in (255 - i, i, 7)])
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert np.array_equal(decode_mask(buf.getvalue()), ids)  # palette indices are the ids
    colours = np.zeros((3, 4, 3), np.uint8)
    colours[0, 0] = (1, 2, 3)
    with pytest.raises(FeatureError, match="feature 'gt': mask PNG has 3 differing channels"):
        decode_mask(_pil_png(colours, "RGB"), where="feature 'gt'")


def test_jpeg_reduced_scale_and_errors_name_the_place():
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 96, 3), 128, np.uint8)).save(buf, "JPEG", quality=90)
    assert decode_image(buf.getvalue()).shape == (64, 96, 3)
    assert decode_image(buf.getvalue(), min_size=(16, 24)).shape == (16, 24, 3)
    with pytest.raises(FeatureError, match="f.tfrecord: record 'a' image: cannot decode 5 bytes"):
        decode_image(b"hello", where="f.tfrecord: record 'a' image")
    with pytest.raises(FeatureError, match="feature 'mask': cannot decode 5 bytes"):
        decode_mask(b"hello")


# --------------------------------------------------------------------------------------------- reader, schemas


def _segmentation_records(n: int):
    rng = np.random.default_rng(1)
    for i in range(n):
        image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        yield encode_segmentation(encode_png(image), rng.integers(0, 19, (6, 8)).astype(np.uint8), f"s{i}")


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_indexed_reader_and_segmentation_schema(tmp_path, compression):
    write_shards(_segmentation_records(5), tmp_path, prefix="train", num_shards=2, compression=compression)
    files = str(tmp_path / "train-*.tfrecord")
    if compression is not None:
        with pytest.raises(ScarceError, match="StreamingTFRecordDataset"):
            TFRecordDataset(files)
    records = TFRecordDataset(files, compressed="memory")
    assert len(records) == 5
    want = list(_segmentation_records(5))
    by_name = {}
    for i in range(len(records)):
        path, data = records.raw(i)
        sample = decode_segmentation(data, where=path)
        by_name[sample["name"]] = sample
        assert np.array_equal(decode_segmentation_mask(data, where=path), sample["mask"].numpy())
    for rec in want:
        sample = by_name[rec["name"]]
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 6, 8)
        assert np.array_equal(sample["mask"].numpy(), decode_mask(rec["mask"]))
    assert records.raw(-1) == records.raw(4)


def test_damaged_segmentation_record_names_file_record_and_feature():
    data = encode_example({"image": b"not a png", "mask": encode_png(np.zeros((2, 2), np.uint8)), "name": "x",
                           "height": 2, "width": 2})
    with pytest.raises(FeatureError, match=r"shard.tfrecord: record 'x' image: cannot decode 9 bytes"):
        decode_segmentation(data, where="shard.tfrecord")
    with pytest.raises(FeatureError, match="'mask'.*missing"):
        decode_segmentation(encode_example({"image": b"x"}), where="shard.tfrecord")


def test_imagefolder_schema():
    png = encode_png(np.full((4, 5, 3), 9, np.uint8))
    record = encode_imagefolder(png, 3)
    sample = decode_imagefolder({k: [v] for k, v in record.items()})
    assert sample["label"].item() == 3 and tuple(sample["image"].shape) == (3, 4, 5)
