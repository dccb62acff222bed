"""TFRecord codec, framing, compression, index and shards, against files written by TensorFlow 2.21."""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tfrecord import example_pb2
from tfrecord.tools.tfrecord2idx import create_index as tfrecord_package_create_index

from scarce import shards as tfr
from scarce._errors import CorruptRecordError, FeatureError, ScarceError

FIXTURES = Path(__file__).parent / "fixtures" / "tfrecord"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
COMPRESSION = {None: None, "GZIP": "gzip", "ZLIB": "zlib"}


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _check_image(value: list, expected: dict) -> None:
    assert len(value) == 1
    assert _sha(value[0]) == expected["sha256"]
    img = Image.open(io.BytesIO(value[0]))
    assert img.format == expected["format"]
    arr = np.asarray(img)
    assert list(arr.shape) == expected["shape"]


def _check_record(got: dict, expected: dict) -> None:
    for key, want in expected.items():
        if key == "tags_sha256":
            assert [_sha(v) for v in got["tags"]] == want
        elif isinstance(want, dict):
            _check_image(got[key], want)
        elif key == "name":
            assert [v.decode("utf-8") for v in got[key]] == [want]
        elif isinstance(want, list):
            assert got[key] == want  # float32 values compare exactly
        else:
            assert got[key] == [want], key
    keys = {("tags" if k == "tags_sha256" else k) for k in expected}
    if set(expected) == {"id"}:  # the sharded files: a random payload not listed in the manifest
        keys.add("payload")
        assert len(got["payload"]) == 1 and len(got["payload"][0]) > 0
    assert set(got) == keys


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_tensorflow_fixture_values(name):
    spec = MANIFEST["files"][name]
    path = FIXTURES / name
    assert tfr.detect_compression(path) == COMPRESSION[spec["compression"]]
    records = list(tfr.read_records(path))
    assert len(records) == len(spec["records"])
    for got, expected in zip(records, spec["records"]):
        _check_record(got, expected)


def test_fixture_int64_extremes_and_non_ascii_are_present():
    records = MANIFEST["files"]["mixed.tfrecord"]["records"]
    big = {r["big_int"] for r in records}
    assert {-(2**63), 2**63 - 1} <= big
    assert any(r["name"] == "" for r in records) and any(not r["name"].isascii() for r in records)
    got = {v[0] for r in tfr.read_records(FIXTURES / "mixed.tfrecord") for v in [r["big_int"]]}
    assert got == big


@pytest.mark.parametrize("name", ["mixed.tfrecord", "rps_like.tfrecord"])
def test_reframing_tensorflow_records_is_byte_identical(tmp_path, name):
    out = tmp_path / name
    with tfr.TFRecordWriter(out) as writer:
        for data in tfr.iter_raw_records(FIXTURES / name):
            writer.write(data)
    assert out.read_bytes() == (FIXTURES / name).read_bytes()


def test_reencoded_examples_equal_tensorflow_messages():
    # TF serializes the feature map in hash order, so compare messages, not bytes.
    for data in tfr.iter_raw_records(FIXTURES / "mixed.tfrecord"):
        kinds = tfr.decode_example_kinds(data)
        record = {name: values for name, (_, values) in kinds.items()}
        ours = tfr.encode_example(record, {name: kind for name, (kind, _) in kinds.items()})
        theirs, again = example_pb2.Example(), example_pb2.Example()
        theirs.ParseFromString(data)
        again.ParseFromString(ours)
        assert again == theirs


@pytest.mark.parametrize("compression", [None, "gzip", "zlib"])
def test_compressed_fixture_decompresses_to_plain(tmp_path, compression):
    # Our compressed output holds exactly the plain file's bytes.
    out = tmp_path / "x.tfrecord"
    with tfr.TFRecordWriter(out, compression) as writer:
        for data in tfr.iter_raw_records(FIXTURES / "mixed.tfrecord"):
            writer.write(data)
    raw = out.read_bytes()
    plain = {None: lambda b: b, "gzip": gzip.decompress, "zlib": zlib.decompress}[compression](raw)
    assert plain == (FIXTURES / "mixed.tfrecord").read_bytes()
    assert tfr.detect_compression(out) == compression
    # the override works too
    assert len(list(tfr.read_records(out, compression=compression or "none"))) == 41


def test_record_dict_kinds_round_trip(tmp_path):
    record = {
        "bytes": b"\x00\xff", "text": "grüße", "int": 7, "bool": True, "float": 0.1,
        "ints": [1, -(2**63), 2**63 - 1], "floats": (1.5, -2.25), "mixed_num": [1, 2.5],
        "arr_u8": np.arange(4, dtype=np.uint8).reshape(2, 2), "arr_f64": np.array([0.1, 0.2]),
        "arr_bool": np.array([True, False]), "empty_ints": np.array([], dtype=np.int64),
        "strs": ["a", b"b"], "np_scalar": np.int32(-3),
    }
    path = tmp_path / "r.tfrecord"
    with tfr.TFRecordWriter(path) as w:
        w.write(record)
    (got,) = tfr.read_records(path)
    assert got["bytes"] == [b"\x00\xff"] and got["text"] == ["grüße".encode()]
    assert got["int"] == [7] and got["bool"] == [1] and got["np_scalar"] == [-3]
    assert got["float"] == [float(np.float32(0.1))]
    assert got["ints"] == [1, -(2**63), 2**63 - 1]
    assert got["floats"] == [1.5, -2.25] and got["mixed_num"] == [1.0, 2.5]
    assert got["arr_u8"] == [0, 1, 2, 3] and got["arr_bool"] == [1, 0]
    assert got["arr_f64"] == [float(np.float32(0.1)), float(np.float32(0.2))]
    assert got["empty_ints"] == [] and got["strs"] == [b"a", b"b"]
    kinds = tfr.decode_example_kinds(next(tfr.iter_raw_records(path)))
    assert kinds["empty_ints"][0] == "int64" and kinds["arr_f64"][0] == "float"


@pytest.mark.parametrize("bad, match", [
    ({"x": []}, "empty list has no kind"),
    ({"x": [1, b"a"]}, "mixes kinds"),
    ({"x": 2**63}, "does not fit in int64"),
    ({"x": {"nested": 1}}, "cannot store a dict"),
    ({"x": np.array([1 + 2j])}, "cannot be stored"),
])
def test_unstorable_values_name_the_feature(bad, match):
    with pytest.raises(FeatureError, match=match) as info:
        tfr.encode_example(bad)
    assert "'x'" in str(info.value)


def test_parse_example_missing_key_and_wrong_kind():
    data = tfr.encode_example({"image": b"abc", "label": 3})
    assert tfr.parse_example(data, {"label": "int64"}) == {"label": [3]}
    with pytest.raises(FeatureError, match=r"'mask'.*missing.*\['image', 'label'\]"):
        tfr.parse_example(data, {"mask": "bytes"})
    with pytest.raises(FeatureError, match="'label': expected kind float, found int64"):
        tfr.parse_example(data, {"label": "float"})


def _damaged_copies(tmp_path: Path) -> dict:
    src = (FIXTURES / "mixed.tfrecord").read_bytes()
    offsets = [o for o, _, _ in tfr.iter_raw_records(FIXTURES / "mixed.tfrecord", with_offsets=True)]
    third = offsets[2]
    cases = {}
    data_flip = bytearray(src)
    data_flip[third + 12 + 5] ^= 0x01
    cases["data byte"] = (bytes(data_flip), third + 12, "corrupted record")  # TF names the data's start
    len_flip = bytearray(src)
    len_flip[third + 1] ^= 0x40
    cases["length byte"] = (bytes(len_flip), third, "corrupted record")
    cases["cut tail"] = (src[: offsets[-1] + 20], offsets[-1], "truncated record")
    paths = {}
    for name, (blob, offset, what) in cases.items():
        path = tmp_path / (name.replace(" ", "_") + ".tfrecord")
        path.write_bytes(blob)
        paths[name] = (path, offset, what)
    return paths


@pytest.mark.parametrize("case", ["data byte", "length byte", "cut tail"])
def test_damage_names_file_and_offset(tmp_path, case):
    path, offset, what = _damaged_copies(tmp_path)[case]
    with pytest.raises(CorruptRecordError) as info:
        list(tfr.read_records(path))
    assert info.value.offset == offset and info.value.path == str(path)
    assert str(info.value) == f"{path}: {what} at byte {offset}"


def test_skip_corrupt_counts_and_reports(tmp_path):
    damaged = _damaged_copies(tmp_path)
    report = tfr.SkipReport()
    records = list(tfr.read_records(damaged["data byte"][0], skip_corrupt=True, report=report))
    assert len(records) == 40 and len(report) == 1
    assert report.skipped[0][1] == damaged["data byte"][1] and "skipped 1" in report.summary()
    report = tfr.SkipReport()
    records = list(tfr.read_records(damaged["length byte"][0], skip_corrupt=True, report=report))
    assert len(records) == 2 and len(report) == 1  # nothing after a bad length can be framed


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_cut_compressed_stream_is_truncated_error(tmp_path, compression):
    src = (FIXTURES / ("mixed.tfrecord.gz" if compression == "gzip" else "mixed.tfrecord.zlib")).read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(CorruptRecordError, match=r"truncated record at byte \d+"):
        list(tfr.read_records(path))


def test_index_matches_tfrecord_package_and_is_cached(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    shutil.copy(FIXTURES / "mixed.tfrecord", path)
    theirs = tmp_path / "theirs.index"
    tfrecord_package_create_index(str(path), str(theirs))
    ours = tfr.create_index(path)
    assert ours == tfr.index_path_for(path)
    assert ours.read_text() == theirs.read_text()
    offsets = tfr.load_index(path)
    assert offsets.shape == (41, 2) and int(offsets[-1].sum()) == path.stat().st_size
    # stale after the file changes: rebuilt on load
    with open(path, "ab") as f:
        f.write(tfr.frame(tfr.encode_example({"id": 99})))
    os.utime(ours, (0, 0))
    assert len(tfr.load_index(path)) == 42
    assert tfr.count_records(path) == 42


def test_index_refuses_compressed(tmp_path):
    with pytest.raises(ScarceError, match="gzip-compressed"):
        tfr.create_index(FIXTURES / "mixed.tfrecord.gz", tmp_path / "x.index")


@pytest.mark.parametrize("compression", [None, "gzip", "zlib"])
def test_write_shards_names_manifest_and_round_trip(tmp_path, compression):
    records = [{"image": os.urandom(i + 1), "label": i % 3, "box": np.ones(4, np.float32) * i,
                "tags": np.array([], dtype=object) if i % 2 else ["x"]} for i in range(11)]
    manifest = tfr.write_shards(records, tmp_path, prefix="train", num_shards=4, compression=compression)
    names = [f"train-0000{k}-of-00004.tfrecord" for k in range(4)]
    assert [s["file"] for s in manifest["shards"]] == names
    assert [s["records"] for s in manifest["shards"]] == [3, 3, 3, 2] and manifest["num_records"] == 11
    assert manifest["features"]["label"] == {"kind": "int64", "min_len": 1, "max_len": 1}
    assert manifest["features"]["tags"] == {"kind": "bytes", "min_len": 0, "max_len": 1}
    assert json.loads((tmp_path / "train.manifest.json").read_text()) == manifest
    for k, name in enumerate(names):
        assert (tmp_path / (name + ".index")).is_file() == (compression is None)
        got = list(tfr.read_records(tmp_path / name))
        assert [g["label"][0] for g in got] == [records[i]["label"] for i in range(k, 11, 4)]
        assert [g["image"][0] for g in got] == [records[i]["image"] for i in range(k, 11, 4)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_killed_writer_leaves_no_shard(tmp_path):
    def records():
        for i in range(5):
            yield {"i": i}
        raise KeyboardInterrupt  # the writer is stopped mid-way

    with pytest.raises(KeyboardInterrupt):
        tfr.write_shards(records(), tmp_path, prefix="p", num_shards=2)
    assert list(tmp_path.iterdir()) == []


def test_kind_change_between_records_is_an_error(tmp_path):
    with pytest.raises(FeatureError, match="'v': kind float"):
        tfr.write_shards([{"v": 1}, {"v": 1.5}], tmp_path, num_shards=1)
    assert list(tmp_path.iterdir()) == []


def test_masked_crc_matches_reference_value():
    # TensorFlow's masked CRC of an 8-byte little-endian zero length (an empty record).
    header = tfr.frame(b"")
    assert header[:8] == b"\0" * 8 and struct.unpack("<I", header[8:12])[0] == tfr.masked_crc(b"\0" * 8)
    with open(FIXTURES / "rps_like.tfrecord", "rb") as f:
        length_bytes, crc = f.read(8), struct.unpack("<I", f.read(4))[0]
    assert tfr.masked_crc(length_bytes) == crc


def test_expand_files_and_missing(tmp_path):
    assert len(tfr.expand_files(str(FIXTURES / "sharded"))) == 4
    assert len(tfr.expand_files(str(FIXTURES / "sharded" / "train-*"))) == 4
    with pytest.raises(ScarceError, match="no TFRecord files match"):
        tfr.expand_files(str(tmp_path / "nothing-*.tfrecord"))
