"""Shards on object storage: a real S3-compatible server (moto's, a subprocess on a free localhost port) and a real
HTTP server that answers byte ranges (a thread), compared byte for byte with local folders.

The credentials and the endpoint reach s3fs only through the environment (``AWS_*``), as on a cluster.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce._errors import DataNotFoundError, ScarceError
from scarce.shards import StreamingTFRecordDataset, TFRecordDataset, expand_files, iter_raw_records, write_shards
from scarce.shards.writer import ShardFolder
from tests._segmentation_data import make_cityscapes

pytest.importorskip("s3fs")
pytest.importorskip("moto")

BUCKET = "scarce-test"
# Looked for in every output and object: it must never leave the environment.
SECRET = "s3cr3t-Never-Logged-4f9c2a"
ENV = {"AWS_ACCESS_KEY_ID": "scarce-test-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
CHILD_ENV_DROP = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
                  "FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3")
RECORDS = [{"data": bytes([i % 251]) * (300 + 37 * i), "label": i} for i in range(40)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's standalone S3 server on localhost, the AWS_* variables pointing at it, and an empty bucket."""
    import s3fs

    port = _free_port()
    # The server logs every request: to a file (a pipe nobody reads fills up and stalls the server).
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, proc, log)
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as mp:
            for name in CHILD_ENV_DROP:
                mp.delenv(name, raising=False)
            for name, value in {**ENV, "AWS_ENDPOINT_URL": endpoint}.items():
                mp.setenv(name, value)
            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem()
            fs.mkdir(BUCKET)
            yield {"fs": fs, "endpoint": endpoint, "url": f"s3://{BUCKET}"}
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _objects(s3, prefix: str) -> dict[str, bytes]:
    """Every object directly under ``s3://BUCKET/prefix``: name -> bytes."""
    fs = s3["fs"]
    fs.invalidate_cache()
    names = [p for p in fs.ls(f"{BUCKET}/{prefix}", detail=False)] if fs.exists(f"{BUCKET}/{prefix}") else []
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in names}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# --------------------------------------------------------------------------------------------- HTTP with ranges


class RangeHandler(SimpleHTTPRequestHandler):
    """http.server plus ``Range: bytes=a-b`` (206 answers), which it lacks; every GET is logged on the server."""

    def log_message(self, *args) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_GET(self) -> None:
        path = self.translate_path(self.path)
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match is None or not os.path.isfile(path):
            self.server.requests.append((self.path, None))
            return super().do_GET()
        size = os.path.getsize(path)
        start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
        if start >= size:
            self.send_error(416)
            return
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start + 1)
        self.server.requests.append((self.path, (start, end)))
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, s3):
    """One dataset in three places: a local folder, s3://, and http:// (the local folder served); plus GZIP."""
    root = tmp_path_factory.mktemp("served")
    write_shards(RECORDS, root / "plain", prefix="train", num_shards=3)
    write_shards(RECORDS, root / "gzip", prefix="train", num_shards=2, compression="gzip")
    write_shards(RECORDS, f"{s3['url']}/reads/plain", prefix="train", num_shards=3)
    write_shards(RECORDS, f"{s3['url']}/reads/gzip", prefix="train", num_shards=2, compression="gzip")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"local": root, "s3": f"{s3['url']}/reads", "http": f"http://127.0.0.1:{server.server_port}",
           "server": server}
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------------------------- writers


def _imagefolder(root: Path) -> Path:
    for k, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(np.full((12, 16, 3), 60 * k + 20 * i, np.uint8)).save(buf, "PNG")
            (root / cls / f"{i}.png").write_bytes(buf.getvalue())
    return root


def _scarce(argv: list[str], capsys) -> tuple[int, str, str]:
    """``scarce ARGV`` in this process: (exit status, stdout, stderr)."""
    from scarce.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture(scope="module")
def converted(tmp_path_factory, s3):
    """`scarce data convert` (imagefolder, cityscapes) and `scarce render`, each to a folder and to s3://."""
    from scarce.cli import main

    tmp = tmp_path_factory.mktemp("converted")
    images, city = _imagefolder(tmp / "images"), tmp / "cityscapes"
    make_cityscapes(city, per_split=1, splits=("train", "val"))
    jobs = {
        "imagefolder": ["data", "convert", "imagefolder", "--root", str(images), "--shards", "2"],
        "cityscapes": ["data", "convert", "cityscapes", "--root", str(city)],
        "rendered": ["render", "--preset", "synthetic-flat", "--num-samples", "3", "--size", "24", "32",
                     "--seed", "3", "--preview", "2"],
    }
    out = {}
    for name, argv in jobs.items():
        for where, target in (("local", str(tmp / name)), ("s3", f"{s3['url']}/converted/{name}")):
            with pytest.raises(SystemExit) as exc:
                main(argv + ["--out", target])
            assert exc.value.code == 0, (name, where)
        out[name] = {"local": tmp / name, "s3": f"{s3['url']}/converted/{name}"}
    return out


@pytest.mark.parametrize("name", ["imagefolder", "cityscapes", "rendered"])
def test_convert_and_render_write_the_same_bytes_to_s3(name, converted, s3, capsys):
    local = _files(converted[name]["local"])
    remote = _objects(s3, f"converted/{name}")
    assert sorted(remote) == sorted(local) and remote == local  # shards, indexes, manifests, render_config, preview
    assert any(n.endswith(".manifest.json") for n in remote) and any(n.endswith(".tfrecord.index") for n in remote)
    status, out, err = _scarce(["data", "inspect", converted[name]["s3"]], capsys)
    assert status == 0, err
    assert "records" in out and converted[name]["s3"] in out


def test_reads_from_s3_and_http_match_local_reads(datasets):
    local, s3_url, http = datasets["local"], datasets["s3"], datasets["http"]
    # A folder (listed; over HTTP, python's directory page), a glob and a manifest name the same files.
    for where in (f"{s3_url}/plain", f"{http}/plain/", f"{http}/plain/train.manifest.json",
                  f"{s3_url}/plain/train-*.tfrecord"):
        assert [p.rsplit("/", 1)[1] for p in expand_files(where)] == [p.name for p in sorted(
            (local / "plain").glob("train-*.tfrecord"))], where
    # Indexed: record i is the same everywhere.
    reference = TFRecordDataset(local / "plain")
    expected = [reference.raw(i)[1] for i in range(len(RECORDS))]
    for where in (f"{s3_url}/plain", f"{http}/plain/train.manifest.json"):
        ds = TFRecordDataset(where)
        assert len(ds) == len(RECORDS) and [ds.raw(i)[1] for i in range(len(ds))] == expected
        assert ds[7] == reference[7]
    # Streaming, plain and GZIP, split over two consumers, shuffled: the same records in the same order.
    for kind in ("plain", "gzip"):
        def consumer_records(where, rank):
            ds = StreamingTFRecordDataset(where, shuffle=True, seed=4, buffer_size=5, rank=rank, world_size=2,
                                          read_ahead=4096)
            ds.set_epoch(1)
            return [data for _, data in ds.raw_records()]

        for rank in (0, 1):
            want = consumer_records(local / kind, rank)
            assert len(want) == len(RECORDS) // 2
            assert consumer_records(f"{s3_url}/{kind}", rank) == want
            assert consumer_records(f"{http}/{kind}/train.manifest.json", rank) == want
    # A range of records inside one file (what a consumer does): seeks, then reads.
    name = "train-00001-of-00003.tfrecord"
    want = list(iter_raw_records(local / "plain" / name, start=3, stop=9))
    assert list(iter_raw_records(f"{s3_url}/plain/{name}", start=3, stop=9)) == want
    assert list(iter_raw_records(f"{http}/plain/{name}", start=3, stop=9, read_ahead=2048)) == want


def test_indexed_reads_are_one_byte_range_each_and_streams_read_ahead(datasets):
    http, server, local = datasets["http"], datasets["server"], datasets["local"]
    ds = TFRecordDataset(f"{http}/plain/train.manifest.json")
    index = {Path(f).name: np.loadtxt(local / "plain" / (Path(f).name + ".index"), dtype=np.int64) for f in ds.files}
    server.requests.clear()
    for i in (31, 2, 17, 2):
        ds.raw(i)
    gets = [(path, rng) for path, rng in server.requests if path.endswith(".tfrecord")]
    assert len(gets) == 4 and all(rng is not None for _, rng in gets)  # never the whole file
    for i, (path, (start, end)) in zip((31, 2, 17, 2), gets):
        k = int(np.searchsorted(ds.cumulative, i, side="right")) - 1
        offset, length = index[Path(path).name][i - ds.cumulative[k]]
        assert Path(path).name == Path(ds.files[k]).name and (start, end) == (offset, offset + length - 1)
    # Streaming a 3-shard folder with 4 KiB of read-ahead: one request per 4 KiB block, not one per record.
    server.requests.clear()
    stream = StreamingTFRecordDataset(f"{http}/plain/train.manifest.json", read_ahead=4096)
    assert sum(1 for _ in stream.raw_records()) == len(RECORDS)
    sizes = {p.name: p.stat().st_size for p in (local / "plain").glob("*.tfrecord")}
    for name, size in sizes.items():
        ranges = sorted(rng for path, rng in server.requests if path.endswith(name) and rng is not None)
        blocks = [(b * 4096, min(b * 4096 + 4096, size) - 1) for b in range(-(-size // 4096))]
        assert blocks[0] in ranges and set(ranges) <= set(blocks) | {(0, 11)}, name  # (0, 11): compression probe
        assert len(ranges) <= len(blocks) + 1 < len(RECORDS) // 3


# --------------------------------------------------------------------------------------------- data modules


def test_datamodules_read_s3_like_local_folders(converted, one_torch_thread):
    from scarce.datamodules.segmentation import SegmentationDataModule, SegmentationSource
    from scarce.datamodules.tfrecord import TFRecordDataModule

    def tfrecord_batches(root, streaming):
        dm = TFRecordDataModule(train=f"{root}/data-*.tfrecord", val=f"{root}/data.manifest.json",
                                features={"image": "png", "label": "int"}, size=(12, 16), augment=False,
                                batch_size=3, num_workers=0, streaming=streaming, shuffle_buffer=4,
                                read_ahead=1024)
        dm.setup("fit")
        torch.manual_seed(0)  # the indexed loader shuffles with torch's generator
        return [b for loader in (dm.train_dataloader(), dm.val_dataloader()) for b in loader]

    for streaming in (True, False):
        local = tfrecord_batches(converted["imagefolder"]["local"], streaming)
        remote = tfrecord_batches(converted["imagefolder"]["s3"], streaming)
        assert len(local) == len(remote) == 4
        for a, b in zip(local, remote):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])

    def segmentation_batches(where, workers):
        source = SegmentationSource(kind="shards", root=str(converted["cityscapes"][where]))
        target = SegmentationSource(kind="rendered", root=str(converted["rendered"][where]), train_split="data",
                                    val_split="data", test_split="data")
        dm = SegmentationDataModule(source, target, size=(16, 24), augment=False, batch_size=2,
                                    num_workers=workers, paired_target=True)
        dm.setup("fit")
        torch.manual_seed(0)
        train = next(iter(dm.train_dataloader()))[0]  # CombinedLoader: (batch, batch_idx, dataloader_idx)
        return [train["source"], train["target"]] + [b for loader in dm.val_dataloader() for b in loader]

    # Forked DataLoader workers read s3:// too (each opens its own connections).
    local, remote = segmentation_batches("local", 0), segmentation_batches("s3", 1)
    assert len(local) == len(remote) == 5  # a paired training batch, then 1 + 2 validation batches
    for a, b in zip(local, remote):
        assert torch.equal(a["image"], b["image"]) and a.get("name") == b.get("name")
        assert ("mask" in a) == ("mask" in b) and ("mask" not in a or torch.equal(a["mask"], b["mask"]))


# --------------------------------------------------------------------------------------------- commit protocol

_KILLED_WRITER = """
import os, signal, sys
from scarce.shards.writer import ShardFolder

def val():
    yield {"x": b"v0"}
    os.kill(os.getpid(), signal.SIGKILL)  # after train is uploaded, inside val

with ShardFolder(sys.argv[1]) as folder:
    folder.write_shards([{"x": bytes([i]) * 50} for i in range(9)], "train", num_shards=2)
    folder.write_shards(val(), "val")
"""


def test_commit_protocol_on_s3(s3, tmp_path, capsys):
    url = f"{s3['url']}/commit"
    train = [{"x": bytes([i]) * 50} for i in range(9)]

    def broken():
        yield {"x": b"v0"}
        raise RuntimeError("source went away")

    # An exception after one dataset was uploaded: nothing is left, not even the journal.
    with pytest.raises(RuntimeError, match="went away"):
        with ShardFolder(url) as folder:
            folder.write_shards(train, "train", num_shards=2)
            assert any(n.startswith("train-") for n in _objects(s3, "commit"))  # uploaded under final names
            folder.write_shards(broken(), "val")
    assert _objects(s3, "commit") == {}

    # A writer killed with SIGKILL: its journal stays and readers refuse the folder until a rerun cleans it up.
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITER, url], env=env, capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    left = _objects(s3, "commit")
    journal = [n for n in left if n.startswith(".folder.commit.tmp-")]
    assert journal and "train.manifest.json" not in left and "train-00000-of-00002.tfrecord" in left
    assert json.loads(left[journal[0]])["create"][:2] == ["train-00000-of-00002.tfrecord",
                                                           "train-00001-of-00002.tfrecord"]
    with pytest.raises(DataNotFoundError, match=re.escape(journal[0])):
        TFRecordDataset(url)
    status, _, err = _scarce(["data", "inspect", url], capsys)
    assert status == 1 and "incomplete" in err and journal[0] in err
    with ShardFolder(url) as folder:
        folder.write_shards(train, "train", num_shards=2)
        folder.write_shards([{"x": b"v0"}], "val")
    assert journal[0] in folder.cleaned
    with ShardFolder(tmp_path / "commit") as local:
        local.write_shards(train, "train", num_shards=2)
        local.write_shards([{"x": b"v0"}], "val")
    assert _objects(s3, "commit") == _files(tmp_path / "commit")

    # Without --overwrite a dataset is kept; with it, replaced whole (the old shards of another count go).
    with pytest.raises(ScarceError, match="already holds a dataset"):
        write_shards(train, url, prefix="train", num_shards=3)
    write_shards(train[:4], url, prefix="train", num_shards=3, overwrite=True)
    names = sorted(n for n in _objects(s3, "commit") if n.startswith("train"))
    assert names == sorted([f"train-0000{k}-of-00003.tfrecord{x}" for k in range(3) for x in ("", ".index")]
                           + ["train.manifest.json"])

    # Readers trust what the manifests list: a stray object is not read, and inspect names it.
    s3["fs"].pipe_file(f"{BUCKET}/commit/train-00007-of-00009.tfrecord", (tmp_path / "commit" /
                       "train-00000-of-00002.tfrecord").read_bytes())
    assert len(TFRecordDataset(url)) == 4 + 1
    status, _, err = _scarce(["data", "inspect", url], capsys)
    assert status == 1 and "train-00007-of-00009.tfrecord: listed in no manifest" in err

    # Another host's journal is never cleaned automatically: a refusal naming it.
    foreign = f".folder.commit.tmp-{os.getpid()}"
    s3["fs"].pipe_file(f"{BUCKET}/commit/{foreign}", json.dumps({"host": "elsewhere", "create": []}).encode())
    with pytest.raises(ScarceError, match=f"{re.escape(foreign)}: another writer \\(host elsewhere"):
        with ShardFolder(url, overwrite=True):
            pass


# --------------------------------------------------------------------------------------------- errors, credentials


def _child(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return subprocess.run([sys.executable, "-c", "from scarce.cli import main; main()", *argv],
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def _set_auth(s3, count: str) -> None:
    request = urllib.request.Request(f"{s3['endpoint']}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).read()


def test_storage_errors_are_one_line_naming_the_url(s3, converted, tmp_path, capsys):
    images = _imagefolder(tmp_path / "images")
    cases = [
        (["data", "convert", "imagefolder", "--root", str(images), "--out", "s3://no-such-bucket/x"],
         "s3://no-such-bucket/x: no such bucket"),
        (["data", "inspect", f"{s3['url']}/converted/none.tfrecord"], "no TFRecord files match"),
        (["data", "dump", f"{s3['url']}/converted/none.tfrecord"], f"{s3['url']}/converted/none.tfrecord: no such"),
        (["data", "inspect", "https://user:pa55word@127.0.0.1:9/x.tfrecord"], "https://user:***@127.0.0.1:9/x"),
    ]
    if importlib.util.find_spec("gcsfs") is None:  # gs:// is optional (`scarce[gcs]`): its absence is one line
        cases.append((["data", "inspect", "gs://bucket/x.tfrecord"], "gs://bucket/x.tfrecord: reading gs:// URLs "
                      "needs a package that is not installed"))
    for argv, words in cases:
        status, out, err = _scarce(argv, capsys)
        assert status == 1 and len(err.strip().splitlines()) == 1 and words in err, (argv, err)
        assert "pa55word" not in err + out and "Traceback" not in err
    assert _objects(s3, "x") == {}

    # Access denied, from a real IAM check: a read-only user may list and read but not write; a wrong secret
    # may do nothing. The keys reach the child only through its environment, and appear in none of its output.
    import boto3

    iam = boto3.client("iam")
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                                                      "Resource": "*"}]}
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
    reader = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    _set_auth(s3, "0")
    try:
        ok = _child(["data", "inspect", converted["imagefolder"]["s3"]], **reader)
        write = _child(["data", "convert", "imagefolder", "--root", str(images), "--out", f"{s3['url']}/denied"],
                       **reader)
        wrong = _child(["data", "inspect", converted["imagefolder"]["s3"]], **{**reader,
                                                                               "AWS_SECRET_ACCESS_KEY": SECRET})
    finally:
        _set_auth(s3, "inf")
    assert ok.returncode == 0, ok.stderr
    for run in (write, wrong):
        assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "access denied" in run.stderr and s3["url"] in run.stderr
    assert f"{s3['url']}/denied" in write.stderr
    for run in (ok, write, wrong):
        for secret in (SECRET, key["SecretAccessKey"]):
            assert secret not in run.stdout + run.stderr
    # Nothing scarce wrote holds a credential (manifests, render_config.json, ...).
    fs = s3["fs"]
    fs.invalidate_cache()
    for path in fs.find(BUCKET):
        assert SECRET.encode() not in fs.cat_file(path) and ENV["AWS_ACCESS_KEY_ID"].encode() not in fs.cat_file(path)
