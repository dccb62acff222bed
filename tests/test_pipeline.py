"""Datasets over TFRecord shards: exact sharding over ranks x workers, shuffle, decoding, joint augmentation."""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from scarce import shards as tfr
from scarce._errors import CorruptRecordError, FeatureError, ScarceError
from scarce.data.transforms import JpegCropResize, draft_scale, train_transform
from scarce.shards.readers import StreamingTFRecordDataset, TFRecordDataset, consumer_ranges

SHARDED = Path(__file__).parent / "fixtures" / "tfrecord" / "sharded"
NUM = 104  # ids 0..103 in shards of 6, 9, 38 and 51 records (written by TensorFlow)


def _ids(world: int, workers: int, epoch: int, compressed_dir=None, **kwargs) -> list[list[int]]:
    files = str((compressed_dir or SHARDED) / "*.tfrecord")
    per_rank = []
    for rank in range(world):
        ds = StreamingTFRecordDataset(files, decode={"id": "int"}, rank=rank, world_size=world, **kwargs)
        ds.set_epoch(epoch)
        ids = [int(i) for b in DataLoader(ds, batch_size=5, num_workers=workers) for i in b["id"]]
        assert len(ids) == len(ds)
        per_rank.append(ids)
    return per_rank


@pytest.mark.parametrize("world, workers", [(1, 0), (1, 2), (3, 2), (4, 1)])
def test_streaming_visits_every_record_once(world, workers):
    per_rank = _ids(world, workers, epoch=0, shuffle=True, buffer_size=16, seed=7)
    flat = [i for ids in per_rank for i in ids]
    assert sorted(flat) == list(range(NUM))
    sizes = [len(ids) for ids in per_rank]
    assert max(sizes) - min(sizes) <= 1


def test_streaming_compressed_shards_exact(tmp_path):
    records = [r for f in sorted(SHARDED.glob("*.tfrecord")) for r in tfr.read_records(f)]
    for k, chunk in enumerate(np.array_split(np.arange(NUM), 3)):
        with tfr.TFRecordWriter(tmp_path / f"z-{k}.tfrecord", "gzip" if k % 2 else "zlib") as w:
            for i in chunk:
                w.write({"id": records[i]["id"]})
    per_rank = _ids(2, 2, epoch=1, compressed_dir=tmp_path, shuffle=True, seed=1)
    assert sorted(i for ids in per_rank for i in ids) == list(range(NUM))


def test_shuffle_deterministic_per_seed_and_epoch():
    a = _ids(2, 0, epoch=3, shuffle=True, buffer_size=20, seed=5)
    b = _ids(2, 0, epoch=3, shuffle=True, buffer_size=20, seed=5)
    c = _ids(2, 0, epoch=4, shuffle=True, buffer_size=20, seed=5)
    unshuffled = _ids(1, 0, epoch=0)[0]
    assert a == b and a != c
    assert unshuffled == list(range(NUM))
    assert a[0] + a[1] != list(range(NUM))


def test_worker_count_changes_split_not_coverage():
    one = _ids(1, 1, epoch=0, shuffle=False)
    two = _ids(1, 2, epoch=0, shuffle=False)
    assert sorted(one[0]) == sorted(two[0]) == list(range(NUM))
    assert one[0] == list(range(NUM))  # one consumer reads in file order


def test_consumer_ranges_even():
    ranges = consumer_ranges(10, 4)
    assert ranges == [(0, 2), (2, 5), (5, 7), (7, 10)]


def test_map_style_dataset_by_index(tmp_path):
    for f in SHARDED.glob("*.tfrecord"):
        shutil.copy(f, tmp_path / f.name)
    ds = TFRecordDataset(str(tmp_path / "*.tfrecord"), decode={"id": "int", "payload": "bytes"})
    assert len(ds) == NUM and (tmp_path / "train-00003-of-00004.tfrecord.index").is_file()
    assert [int(ds[i]["id"]) for i in range(NUM)] == list(range(NUM))
    assert int(ds[-1]["id"]) == NUM - 1
    with pytest.raises(IndexError):
        ds[NUM]
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2)
    assert sorted(int(i) for b in loader for i in b["id"]) == list(range(NUM))


def test_map_style_refuses_compressed():
    with pytest.raises(ScarceError, match="StreamingTFRecordDataset"):
        TFRecordDataset(str(SHARDED.parent / "mixed.tfrecord.gz"))


def test_map_style_detects_damage(tmp_path):
    path = tmp_path / "d.tfrecord"
    shutil.copy(SHARDED / "train-00000-of-00004.tfrecord", path)
    ds = TFRecordDataset(path)
    blob = bytearray(path.read_bytes())
    offset, length = (int(v) for v in ds.offsets[0][2])
    blob[offset + length - 6] ^= 1
    offset += 12  # a data CRC mismatch is blamed on the data's first byte, as TensorFlow does
    path.write_bytes(bytes(blob))
    index = tfr.index_path_for(path)
    os.utime(path, (index.stat().st_mtime + 5, index.stat().st_mtime + 5))
    with pytest.raises(CorruptRecordError, match=f"corrupted record at byte {offset}"):
        TFRecordDataset(path)  # the file is newer than its index: rebuilding it checks every record
    with pytest.raises(CorruptRecordError, match=f"corrupted record at byte {offset}"):
        ds[2]
    assert "id" in ds[1]


def test_missing_key_and_wrong_kind_from_description():
    ds = StreamingTFRecordDataset(str(SHARDED / "*.tfrecord"), decode={"label": "int"})
    with pytest.raises(FeatureError, match="'label'.*missing"):
        next(iter(ds))
    ds = StreamingTFRecordDataset(str(SHARDED / "*.tfrecord"), decode={"id": "float"})
    with pytest.raises(FeatureError, match="'id': expected kind float, found int64"):
        next(iter(ds))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_segmentation_description_and_joint_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 4, (12, 16)).astype(np.uint8) for _ in range(4)]
    masks[0][0, 0] = 255
    # the image's red channel is a function of the mask, so alignment can be checked after geometry
    images = [np.stack([m * 60, np.full_like(m, 7), np.full_like(m, 9)], -1) for m in masks]
    tfr.write_shards(({"image": _png(i), "mask": _png(m), "label": k} for k, (i, m) in enumerate(zip(images, masks))),
                     tmp_path, prefix="seg", num_shards=2)
    description = {"image": "png", "mask": "png", "label": "int"}
    plain = TFRecordDataset(str(tmp_path / "seg-*.tfrecord"), decode=description)
    sample = plain[0]
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 12, 16)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (12, 16)
    assert int(sample["mask"][0, 0]) == 255 and sample["label"].dtype == torch.int64
    assert torch.equal(sample["mask"], torch.from_numpy(masks[0]).long())

    torch.manual_seed(0)
    flip_only = train_transform(crop_scale=None, brightness=0, saturation=None)
    aug = StreamingTFRecordDataset(str(tmp_path / "seg-*.tfrecord"), decode=description, transform=flip_only)
    flipped = 0
    for s in aug:
        k = int(s["label"])
        red = torch.round(s["image"][0] * 255).long()
        assert torch.equal(red, (s["mask"] * 60) % 256)  # image and mask flipped together
        flipped += not torch.equal(s["mask"], torch.from_numpy(masks[k]).long())
    assert flipped > 0

    full = train_transform(size=(8, 10))
    out = StreamingTFRecordDataset(str(tmp_path / "seg-*.tfrecord"), decode=description, transform=full)
    for s in out:
        assert s["image"].shape == (3, 8, 10) and s["mask"].shape == (8, 10)
        assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
        assert set(s["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}  # nearest: no blended class ids


def test_jpeg_crop_resize_and_draft_scale():
    arr = np.random.default_rng(1).integers(0, 255, (256, 512, 3), dtype=np.uint8)
    arr[:, :256, 0] = 255  # red left half: tells RGB order and flips apart
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    out = JpegCropResize((64, 64)).to_tensor(buf.getvalue())
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert draft_scale((256, 512), (256, 512), (64, 64)) == 4
    assert draft_scale((256, 512), (205, 410), (224, 224)) == 1
    keep = JpegCropResize((64, 64), scale=(1, 1), flip_p=0, reduced_decode=False)(buf.getvalue()).astype(float)
    flip = JpegCropResize((64, 64), scale=(1, 1), flip_p=1, reduced_decode=False)(buf.getvalue()).astype(float)
    assert keep[:, :24, 0].mean() > 200 > 170 > keep[:, -24:, 0].mean()  # RGB order: red on the left
    assert flip[:, -24:, 0].mean() > 200
    assert np.abs(keep[:, ::-1] - flip).max() == 0
    # a reduced-scale decode (1/4 here: 128x64 still covers 64x64) stays close to the full decode
    fast = JpegCropResize((64, 64), scale=(1, 1), flip_p=0, reduced_decode=True, antialias=True)
    full = JpegCropResize((64, 64), scale=(1, 1), flip_p=0, reduced_decode=False, antialias=True)
    assert np.abs(full(buf.getvalue()).astype(float) - fast(buf.getvalue())).mean() < 12


def test_streaming_skip_corrupt(tmp_path):
    path = tmp_path / "s.tfrecord"
    shutil.copy(SHARDED / "train-00001-of-00004.tfrecord", path)
    blob = bytearray(path.read_bytes())
    offsets = [o for o, _, _ in tfr.iter_raw_records(path, with_offsets=True)]
    blob[offsets[4] + 20] ^= 0xFF
    path.write_bytes(bytes(blob))
    ds = StreamingTFRecordDataset(path, decode={"id": "int"}, skip_corrupt=True)
    ids = [int(s["id"]) for s in ds]
    assert len(ids) == 8 and len(ds.skip_report) == 1
    with pytest.raises(CorruptRecordError):
        list(StreamingTFRecordDataset(path, decode={"id": "int"}))


def _prefetch_batches(device: str) -> None:
    from scarce.data.prefetch import CudaPrefetcher

    loader = DataLoader(StreamingTFRecordDataset(str(SHARDED / "*.tfrecord"), decode={"id": "int"}), batch_size=10,
                        pin_memory=device == "cuda")
    batches = list(CudaPrefetcher(loader, device))
    assert all(b["id"].device.type == device for b in batches)
    assert torch.cat([b["id"].cpu() for b in batches]).tolist() == list(range(NUM))


def test_prefetcher_cpu():
    _prefetch_batches("cpu")


@pytest.mark.gpu
def test_prefetcher_cuda():
    _prefetch_batches("cuda")


def test_even_ranks_equal_shares():
    per_rank = _ids(3, 2, epoch=2, shuffle=True, seed=4, even_ranks=True)
    assert [len(ids) for ids in per_rank] == [NUM // 3] * 3  # 104 = 3 * 34 + 2: two records left out
    flat = [i for ids in per_rank for i in ids]
    assert len(set(flat)) == len(flat) == 102


def test_bench_pipeline_device_decode_row(tmp_path, capsys):
    """`scarce bench pipeline --decode device`: the gpu_decode path (workers parse, batches decoded and augmented on
    the device), here on the CPU; a missing CUDA is one clear error, not a traceback."""
    from scarce._errors import ScarceError
    from scarce.bench.pipeline import main
    from scarce.bench.street import make_segmentation_shards

    make_segmentation_shards(tmp_path, 12, (32, 48), shards=2)
    argv = ["--data", str(tmp_path), "--pattern", "train-*", "--size", "16", "24", "--batch-size", "4", "--epochs",
            "1", "--workers", "1", "--plot", str(tmp_path / "plot.png"), "--decode", "device", "--device", "cpu"]
    assert main(argv) == 0
    assert "decode on cpu: 12 images" in capsys.readouterr().out
    if not torch.cuda.is_available():
        with pytest.raises(ScarceError, match="needs CUDA"):
            main(argv[:-1] + ["cuda"])
