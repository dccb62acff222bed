"""`scarce data convert|inspect|dump|index` on real files."""

import base64
import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scarce import shards as tfr
from scarce.data.cli import SUBCOMMANDS
from scarce.data.convert import CONVERTERS
from scarce.data.cli import main as data_main

FIXTURES = Path(__file__).parent / "fixtures" / "tfrecord"


def _scarce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scarce", *args], capture_output=True, text=True, timeout=120)


def test_registries_name_module_functions():
    for target, _ in SUBCOMMANDS.values():
        module, func = target.split(":")
        assert module.startswith("scarce.") and func
    assert {"imagefolder", "mnist", "cityscapes", "synthia"} == set(CONVERTERS) and "stats" in SUBCOMMANDS
    assert all(callable(convert) for convert in CONVERTERS.values())


def test_convert_imagefolder(tmp_path, capsys):
    root = tmp_path / "rps"
    blobs = {}
    for k, cls in enumerate(["scissors", "paper", "rock"]):  # labels follow sorted names, not creation order
        (root / cls).mkdir(parents=True)
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 40 * k + i, np.uint8)).save(buf, "JPEG", quality=90)
            (root / cls / f"{i}.jpg").write_bytes(buf.getvalue())
            blobs[buf.getvalue()] = cls
    (root / "rock" / "notes.txt").write_text("not an image")
    assert data_main(["convert", "imagefolder", "--root", str(root), "--out", str(tmp_path / "out"),
                      "--shards", "2", "--compression", "gzip"]) == 0
    out, err = capsys.readouterr()
    # One summary line, not the manifest; progress on stderr (not a terminal here: plain lines, the last one at 9/9).
    assert out.startswith(f"imagefolder -> {tmp_path / 'out'}: data 9 records in 2 shard(s); ") and out.count("\n") == 1
    assert "convert imagefolder data: 9/9 records (100%)" in err.splitlines()[-1]
    manifest = json.loads((tmp_path / "out" / "data.manifest.json").read_text())
    assert manifest["classes"] == ["paper", "rock", "scissors"] and manifest["num_records"] == 9
    assert manifest["compression"] == "gzip"
    records = [r for s in manifest["shards"] for r in tfr.read_records(tmp_path / "out" / s["file"])]
    assert len(records) == 9
    for r in records:
        assert manifest["classes"][r["label"][0]] == blobs[r["image"][0]]  # the file bytes, unchanged


def _write_idx(path: Path, arr: np.ndarray) -> None:
    magic = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(magic + arr.astype(np.uint8).tobytes())


def test_convert_mnist_all_splits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    images = {"train": rng.integers(0, 255, (7, 28, 28)), "t10k": rng.integers(0, 255, (4, 28, 28))}
    labels = {"train": rng.integers(0, 10, 7), "t10k": rng.integers(0, 10, 4)}
    for stem in ("train", "t10k"):
        _write_idx(root / f"{stem}-images-idx3-ubyte", images[stem])
        _write_idx(root / f"{stem}-labels-idx1-ubyte", labels[stem])
    assert data_main(["convert", "mnist", "--root", str(root), "--out", str(tmp_path / "out"), "--json"]) == 0
    manifests = json.loads(capsys.readouterr().out)
    assert {k: m["num_records"] for k, m in manifests.items()} == {"train": 7, "val": 0, "test": 4}
    got = list(tfr.read_records(tmp_path / "out" / "test-00000-of-00001.tfrecord"))
    for r, img, label in zip(got, images["t10k"], labels["t10k"]):
        assert r["label"] == [int(label)]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r["image"][0]))), img.astype(np.uint8))


def test_inspect_ok_and_damaged(tmp_path):
    ok = _scarce("data", "inspect", str(FIXTURES / "mixed.tfrecord.zlib"))
    assert ok.returncode == 0, ok.stderr
    assert "41 records, compression zlib, CRC ok" in ok.stdout
    assert "big_int              int64  len 1..1" in ok.stdout and "labels               int64  len 0..5" in ok.stdout
    bad = tmp_path / "bad.tfrecord"
    blob = bytearray((FIXTURES / "rps_like.tfrecord").read_bytes())
    blob[100] ^= 0xFF
    bad.write_bytes(bytes(blob))
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes((FIXTURES / "rps_like.tfrecord").read_bytes()[:-10])
    res = _scarce("data", "inspect", str(bad), str(cut), str(FIXTURES / "rps_like.tfrecord"))
    assert res.returncode == 1
    assert f"{bad}: corrupted record at byte 12" in res.stderr
    assert f"{cut}: truncated record at byte" in res.stderr
    assert "rps_like.tfrecord: 31 records" in res.stdout  # the good file is still reported


def test_dump_json_lines():
    res = _scarce("data", "dump", str(FIXTURES / "mixed.tfrecord.gz"), "--limit", "3")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 3
    expected = json.loads((FIXTURES / "manifest.json").read_text())["files"]["mixed.tfrecord.gz"]["records"]
    for got, want in zip(lines, expected):
        assert got["id"] == [want["id"]] and got["bbox"] == want["bbox"] and got["big_int"] == [want["big_int"]]
        assert all(v.startswith("b64:") for v in got["tags"])
        assert base64.b64decode(got["name"][0][4:]).decode() == want["name"]


def test_index_command(tmp_path):
    for f in (FIXTURES / "sharded").glob("*.tfrecord"):
        shutil.copy(f, tmp_path / f.name)
    res = _scarce("data", "index", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "train-00003-of-00004.tfrecord: 51 records" in res.stdout
    assert len(tfr.load_index(tmp_path / "train-00003-of-00004.tfrecord", build=False)) == 51


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "convert", "--help"]])
def test_help(argv):
    res = _scarce(*argv)
    assert res.returncode == 0 and "usage" in res.stdout.lower()


def test_bench_pipeline_runs(tmp_path, capsys):
    import torch

    from scarce.bench.pipeline import main as bench_main
    from scarce.bench.pipeline import make_jpeg_shards

    with pytest.raises(SystemExit) as info:
        bench_main(["--help"])
    assert info.value.code == 0 and "--image-key" in capsys.readouterr().out
    make_jpeg_shards(tmp_path / "jpeg", records=24, shards=2, size=(48, 64))
    plot = tmp_path / "box.png"
    threads = torch.get_num_threads()
    try:
        assert bench_main(["--data", str(tmp_path / "jpeg"), "--batch-size", "8", "--size", "32", "32",
                           "--epochs", "2", "--workers", "2", "--plot", str(plot)]) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert last.startswith("images_per_second: ") and float(last.split()[1]) > 0
    # Progress on stderr: the shards written, then each timed epoch (3 batches of 8 from 24 records).
    assert "synthetic JPEG shards in" in err and ": 24/24 images (100%)" in err
    assert any(line.startswith("bench pipeline (") and "epoch 1: 3 batches" in line for line in err.splitlines())
    for stage in ("read", "parse", "decode", "augment", "collate"):
        assert stage in out
    assert "measured: threads" in out and plot.stat().st_size > 1000


def test_progress_is_plain_lines_off_a_terminal_and_can_be_turned_off(monkeypatch, capsys):
    from scarce._progress import INTERVAL_ENV, PROGRESS_ENV, progress

    monkeypatch.setenv(INTERVAL_ENV, "0")  # a line after every item (default: one every 10 s, and the last)
    assert list(progress(iter("abc"), desc="job", total=3, unit="letters")) == ["a", "b", "c"]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["job: 1/3 letters (33%)", "job: 2/3 letters (67%)",
                                                      "job: 3/3 letters (100%)"]
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert list(progress(range(4), desc="job")) == [0, 1, 2, 3] and capsys.readouterr().err == ""
