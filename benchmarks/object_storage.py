"""Reading shards from S3 (moto's server on localhost) next to reading the same shards from a local folder.

Writes one dataset (``--records`` records of ``--record-bytes`` bytes in ``--shards`` shards) to a local folder
and, through ``write_shards``, to ``s3://bench/data`` on a moto server this script starts on a free localhost port
(credentials and endpoint only in its environment, as on a cluster). Then, per location:

- streaming: ``StreamingTFRecordDataset`` front to back, MB/s (remote: for each ``--read-ahead``);
- indexed: ``TFRecordDataset`` at ``--indexed-reads`` seeded random indices, records/s (remote: one byte-range
  request per record).

Each row is the best of ``--repeats`` passes, which is what load from other jobs on a shared machine spares.

The local rows are the anchor. A localhost server has none of a real store's latency (tens of ms per request),
so the remote rows measure scarce's and fsspec's own cost per request and per byte, not a cloud's.
``--local-only`` runs the local rows alone, with APIs older trees have too: run it with another tree's
``PYTHONPATH`` to compare local reads across versions. Usage:

    .venv/bin/python benchmarks/object_storage.py [--records 4000] [--record-bytes 16384] [--read-ahead 1 8]
    PYTHONPATH=OTHER/src .venv/bin/python benchmarks/object_storage.py --local-only
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from scarce.shards import StreamingTFRecordDataset, TFRecordDataset, write_shards


def _records(n: int, size: int):
    rng = random.Random(0)
    for i in range(n):
        yield {"data": rng.randbytes(size), "label": i}


def _stream(files, repeats: int, **kwargs) -> tuple[int, float]:
    """Bytes streamed and the best time of ``repeats`` passes (the best is what load from other jobs spares)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        total = sum(len(data) for _, data in StreamingTFRecordDataset(files, **kwargs).raw_records())
        times.append(time.perf_counter() - start)
    return total, min(times)


def _indexed(files, reads: int, repeats: int) -> tuple[int, float]:
    ds = TFRecordDataset(files)
    order = random.Random(1).choices(range(len(ds)), k=reads)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in order:
            ds.raw(i)
        times.append(time.perf_counter() - start)
    return reads, min(times)


def _moto(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=sink, stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).read()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"moto server did not start: {log.read_text()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--record-bytes", type=int, default=16384)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--read-ahead", type=float, nargs="+", default=[1, 8], help="MiB per streaming request")
    parser.add_argument("--indexed-reads", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="passes per row; the best is printed")
    parser.add_argument("--local-only", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "data"
        write_shards(_records(args.records, args.record_bytes), local, prefix="data", num_shards=args.shards)
        mb, seconds = _stream(str(local), args.repeats)
        rows.append(("local", "streaming", "", mb / 1e6 / seconds, "MB/s"))
        n, seconds = _indexed(str(local), args.indexed_reads, args.repeats)
        rows.append(("local", "indexed", "", n / seconds, "records/s"))
        if not args.local_only:
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                               "AWS_DEFAULT_REGION": "us-east-1"})
            proc, endpoint = _moto(Path(tmp) / "moto.log")
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            try:
                import fsspec

                fsspec.filesystem("s3").mkdir("bench")
                url = "s3://bench/data"
                start = time.perf_counter()
                write_shards(_records(args.records, args.record_bytes), url, prefix="data", num_shards=args.shards)
                rows.append(("s3", "write_shards", "", args.records * args.record_bytes / 1e6
                             / (time.perf_counter() - start), "MB/s"))
                for mib in args.read_ahead:
                    mb, seconds = _stream(url, args.repeats, read_ahead=int(mib * (1 << 20)))
                    rows.append(("s3", "streaming", f"read_ahead {mib:g} MiB", mb / 1e6 / seconds, "MB/s"))
                n, seconds = _indexed(url, args.indexed_reads, args.repeats)
                rows.append(("s3", "indexed", "1 range request / record", n / seconds, "records/s"))
            finally:
                proc.terminate()
                proc.wait()
    print(f"{args.records} records x {args.record_bytes} B in {args.shards} shards; "
          f"{args.indexed_reads} random indexed reads; best of {args.repeats}")
    print(f"{'where':<6} {'read':<13} {'setting':<26} {'rate':>10}")
    for where, read, setting, rate, unit in rows:
        print(f"{where:<6} {read:<13} {setting:<26} {rate:>10.1f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
