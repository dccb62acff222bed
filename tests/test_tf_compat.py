"""TensorFlow parses what scarce writes (plain, GZIP, ZLIB) with ``tf.io.parse_single_example``.

TensorFlow lives in its own venv, ``.venv-tf`` (``make test`` creates it; ``make tf-env`` alone); it runs
in a subprocess. Without it this test fails, unless ``SCARCE_SKIP_TF=1`` is set.
"""

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scarce import shards as tfr
from scarce._errors import CorruptRecordError

ROOT = Path(__file__).resolve().parents[1]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"

TF_SCRIPT = r"""
import base64, json, sys
import tensorflow as tf

spec = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "big": tf.io.FixedLenFeature([2], tf.int64),
    "weight": tf.io.FixedLenFeature([], tf.float32),
    "bbox": tf.io.VarLenFeature(tf.float32),
    "labels": tf.io.VarLenFeature(tf.int64),
    "name": tf.io.FixedLenFeature([], tf.string),
    "tags": tf.io.VarLenFeature(tf.string),
}
out = {}
for path, compression in json.loads(sys.argv[1]):
    records = []
    for raw in tf.data.TFRecordDataset(path, compression_type=compression):
        ex = tf.io.parse_single_example(raw, spec)
        records.append({
            "image": base64.b64encode(ex["image"].numpy()).decode(),
            "label": int(ex["label"].numpy()),
            "big": [int(v) for v in ex["big"].numpy()],
            "weight": float(ex["weight"].numpy()),
            "bbox": [float(v) for v in ex["bbox"].values.numpy()],
            "labels": [int(v) for v in ex["labels"].values.numpy()],
            "name": ex["name"].numpy().decode("utf-8"),
            "tags": [base64.b64encode(v).decode() for v in ex["tags"].values.numpy()],
        })
    out[path] = records
out["damaged"] = {}
for damaged in json.loads(sys.argv[2]):
    try:
        for _ in tf.data.TFRecordDataset(damaged):
            pass
        out["damaged"][damaged] = "no error"
    except tf.errors.DataLossError as err:
        out["damaged"][damaged] = err.message
print("JSON:" + json.dumps(out))
"""


def _records(n: int) -> list[dict]:
    rng = np.random.default_rng(3)
    return [{
        "image": rng.bytes(int(rng.integers(0, 300))),
        "label": i,
        "big": np.array([-(2**63), 2**63 - 1]),
        "weight": float(rng.normal()),
        "bbox": rng.normal(size=int(rng.integers(0, 5))).astype(np.float32),
        "labels": np.arange(i % 4, dtype=np.int64),
        "name": ["", "straße", "東京", "road"][i % 4],
        "tags": np.array([b"", bytes(range(256)), b"x"][: i % 4], dtype=object),
    } for i in range(n)]


def test_tensorflow_parses_scarce_files(tmp_path):
    if not TF_PYTHON.exists():
        if os.environ.get("SCARCE_SKIP_TF") == "1":
            pytest.skip("SCARCE_SKIP_TF=1: TensorFlow compatibility not checked")
        pytest.fail(f"{TF_PYTHON} is missing: run `make test` (or `make tf-env`) to create the TensorFlow venv, "
                    "or set SCARCE_SKIP_TF=1 to skip this check")
    records = _records(9)
    files = []
    for compression in (None, "gzip", "zlib"):
        manifest = tfr.write_shards(records, tmp_path / str(compression), prefix="t", num_shards=2,
                                    compression=compression)
        for shard in manifest["shards"]:
            files.append((str(tmp_path / str(compression) / shard["file"]), (compression or "").upper()))
    blob = Path(files[0][0]).read_bytes()
    offsets = [o for o, _, _ in tfr.iter_raw_records(files[0][0], with_offsets=True)]
    damaged = {}
    for name, pos, cut in [("data", offsets[2] + 14, None), ("length", offsets[3] + 2, None),
                           ("cut", None, offsets[-1] + 30)]:
        copy = bytearray(blob[:cut])
        if pos is not None:
            copy[pos] ^= 0x10
        damaged[name] = tmp_path / f"damaged-{name}.tfrecord"
        damaged[name].write_bytes(bytes(copy))

    proc = subprocess.run([str(TF_PYTHON), "-c", TF_SCRIPT, json.dumps(files),
                           json.dumps([str(p) for p in damaged.values()])], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                       "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("JSON:"))
    result = json.loads(line[5:])

    for k, (path, _) in enumerate(files):
        expected = records[k % 2::2]
        got = result[path]
        assert len(got) == len(expected), path
        for g, e in zip(got, expected):
            assert base64.b64decode(g["image"]) == e["image"]
            assert g["label"] == e["label"] and g["big"] == [-(2**63), 2**63 - 1]
            assert g["weight"] == float(np.float32(e["weight"]))
            assert g["bbox"] == [float(v) for v in e["bbox"]]
            assert g["labels"] == e["labels"].tolist() and g["name"] == e["name"]
            assert [base64.b64decode(t) for t in g["tags"]] == list(e["tags"])
    # TensorFlow and scarce blame the same byte, with the same words
    for name, path in damaged.items():
        with pytest.raises(CorruptRecordError) as info:
            list(tfr.read_records(path))
        message = result["damaged"][str(path)]
        assert re.search(rf"{info.value.what} at {info.value.offset}\b", message), (name, str(info.value), message)
    assert info.value.what == "truncated record"


def test_the_committed_fixtures_are_what_their_generator_writes(tmp_path):
    """tests/fixtures/tfrecord/generate.py (TensorFlow, seed 1) writes exactly the committed files and manifest."""
    if not TF_PYTHON.exists():
        if os.environ.get("SCARCE_SKIP_TF") == "1":
            pytest.skip("SCARCE_SKIP_TF=1: TensorFlow fixtures not regenerated")
        pytest.fail(f"{TF_PYTHON} is missing: run `make test` (or `make tf-env`), or set SCARCE_SKIP_TF=1")
    fixtures = ROOT / "tests" / "fixtures" / "tfrecord"
    proc = subprocess.run([str(TF_PYTHON), str(fixtures / "generate.py"), "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                       "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(fixtures) for p in fixtures.rglob("*") if p.is_file() and p.suffix != ".py"
                       and p.name != "README.md")
    assert written == committed
    for name in written:
        assert (tmp_path / name).read_bytes() == (fixtures / name).read_bytes(), name
