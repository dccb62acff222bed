"""scarce's input pipeline vs tf.data on the same JPEG TFRecord shards and the same cores (book 7.1).

Both sides: 512x256 JPEG (quality 90) records -> parse -> decode -> random flip -> random crop of 0.8-1.0
of the size -> resize to 224x224 -> float in [0, 1] -> shuffle 1000 -> batch 32.

* tf.data (anchor, in ``.venv-tf`` as a subprocess): ``list_files`` -> ``interleave(TFRecordDataset,
  num_parallel_calls=AUTOTUNE)`` -> ``map(..., AUTOTUNE)`` -> ``shuffle(1000)`` -> ``batch(32)`` ->
  ``prefetch(AUTOTUNE)``.
* scarce: ``scarce.bench.pipeline`` (threads or processes, chosen by measurement; reduced-scale JPEG decode).

Runs alternate (tf.data, scarce, tf.data, scarce, ...) so load changes hit both; each run is ``--epochs``
full passes, timed from the first batch request (pipeline construction excluded on both sides). Prints
every run, the medians, the CPU time per image of each side (``time.process_time`` over the loop: on a
shared machine wall-clock rates follow the other jobs, CPU time hardly does) and last ``speedup: X``
(scarce / tf.data images per second). Then the streaming memory check: resident
memory after 1k and after 100k records read through ``StreamingTFRecordDataset`` (shuffle buffer 1000).

    .venv/bin/python benchmarks/pipeline_vs_tfdata.py [--rounds 3] [--records 2000] [--cores 0,1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"

TF_CODE = r"""
import json, sys, time
import tensorflow as tf
pattern, epochs, batch, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
AUTOTUNE = tf.data.AUTOTUNE
spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

def parse_and_augment(raw):
    ex = tf.io.parse_single_example(raw, spec)
    img = tf.io.decode_jpeg(ex["image"], channels=3)
    img = tf.image.random_flip_left_right(img)
    dims = tf.cast(tf.shape(img)[:2], tf.float32)
    crop = tf.cast(dims * tf.random.uniform([], 0.8, 1.0), tf.int32)
    img = tf.image.random_crop(img, tf.concat([crop, [3]], 0))
    img = tf.image.resize(img, (h, w))  # bilinear, float32 in [0, 255]
    return img / 255.0, ex["label"]

files = tf.data.Dataset.list_files(pattern, shuffle=True)
ds = files.interleave(tf.data.TFRecordDataset, cycle_length=4, num_parallel_calls=AUTOTUNE)
ds = ds.map(parse_and_augment, num_parallel_calls=AUTOTUNE).shuffle(1000).batch(batch).prefetch(AUTOTUNE)
images, start, cpu0, epoch_rates = 0, time.perf_counter(), time.process_time(), []
for e in range(epochs):
    t, n = time.perf_counter(), 0
    for x, y in ds:
        n += int(x.shape[0])
    epoch_rates.append(n / (time.perf_counter() - t))
    images += n
print("RESULT " + json.dumps({"images_per_second": images / (time.perf_counter() - start), "epochs": epoch_rates,
                              "images": images, "cpu_ms_per_image": (time.process_time() - cpu0) * 1e3 / images}))
"""


def run_tfdata(pattern: str, epochs: int, batch: int, size: tuple[int, int], cores: str | None) -> dict:
    cmd = [str(TF_PYTHON), "-c", TF_CODE, pattern, str(epochs), str(batch), str(size[0]), str(size[1])]
    if cores:
        cmd = ["taskset", "-c", cores] + cmd
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"tf.data run failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


SCARCE_CODE = r"""
import json, sys, time, torch
from scarce import shards as tfr
from scarce.bench.pipeline import PipelineConfig, ThreadedJpegPipeline, process_pipeline, run
pattern, epochs, batch, h, w, workers, mode = sys.argv[1:8]
torch.set_num_threads(1)
import cv2
cv2.setNumThreads(1)
cfg = PipelineConfig(tfr.expand_files(pattern), "image", int(batch), (int(h), int(w)), int(workers))
make = ThreadedJpegPipeline(cfg).epoch if mode == "threads" else process_pipeline(cfg)
cpu0 = time.process_time()  # this process's threads; process mode's workers are not counted
rate, times, images = run(make, int(epochs))
cpu_ms = (time.process_time() - cpu0) * 1e3 / images
epochs_rates = [len(t) * int(batch) / sum(t) for t in times if t]  # last batch may be partial: approximate
print("RESULT " + json.dumps({"images_per_second": rate, "epochs": epochs_rates, "images": images,
                              "cpu_ms_per_image": cpu_ms}))
"""


def run_scarce(pattern: str, epochs: int, batch: int, size: tuple[int, int], workers: int, mode: str,
               cores: str | None) -> dict:
    # A fresh process per run, like the tf.data side: no warm caches carried between runs.
    cmd = [sys.executable, "-c", SCARCE_CODE, pattern, str(epochs), str(batch), str(size[0]), str(size[1]),
           str(workers), mode]
    if cores:
        cmd = ["taskset", "-c", cores] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"scarce run failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_check(folder: Path, records: int = 100_000) -> dict:
    """Resident memory after 1k and after ``records`` streamed records (1 KiB payload each, shuffle 1000)."""
    from scarce import shards as tfr
    from scarce.shards.readers import StreamingTFRecordDataset

    if not (folder / "mem.manifest.json").is_file():
        payload = os.urandom(1024)
        tfr.write_shards(({"payload": payload, "id": i} for i in range(records)), folder, prefix="mem",
                         num_shards=4, compression="gzip")
    ds = StreamingTFRecordDataset(str(folder / "mem-*.tfrecord"), decode={"payload": "bytes", "id": "int"},
                                  shuffle=True, buffer_size=1000)
    rss = {}
    for i, _ in enumerate(ds, 1):
        if i == 1000:
            rss["after_1k_mb"] = _rss_mb()
    rss["after_all_mb"] = _rss_mb()
    rss["records"] = i
    rss["growth_mb"] = rss["after_all_mb"] - rss["after_1k_mb"]
    return rss


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/scarce-bench/jpeg", help="shard folder (created if missing)")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=["threads", "processes"], default="threads")
    parser.add_argument("--cores", default=None, help="taskset CPU list for both sides, e.g. 0,1")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    if not TF_PYTHON.exists():
        raise SystemExit(f"{TF_PYTHON} missing: run `make tf-env` first")
    sys.path.insert(0, str(ROOT / "src"))
    from scarce.bench.pipeline import make_jpeg_shards

    data = Path(args.data)
    if not (data / "bench.manifest.json").is_file():
        print(f"writing {args.records} JPEG records (512x256, q90) to {data} ...", flush=True)
        make_jpeg_shards(data, args.records, args.shards)
    pattern = str(data / "bench-*.tfrecord")
    size = (224, 224)
    tf_rates, sc_rates, tf_cpu, sc_cpu = [], [], [], []
    print(f"load average before: {os.getloadavg()}", flush=True)
    for r in range(args.rounds):
        tf_res = run_tfdata(pattern, args.epochs, args.batch_size, size, args.cores)
        sc_res = run_scarce(pattern, args.epochs, args.batch_size, size, args.workers, args.mode, args.cores)
        tf_rates.append(tf_res["images_per_second"])
        sc_rates.append(sc_res["images_per_second"])
        tf_cpu.append(tf_res["cpu_ms_per_image"])
        sc_cpu.append(sc_res["cpu_ms_per_image"])
        print(f"round {r}: tf.data {tf_rates[-1]:.0f} img/s (epochs {[round(x) for x in tf_res['epochs']]}, "
              f"{tf_cpu[-1]:.2f} CPU ms/img), scarce {sc_rates[-1]:.0f} img/s (epochs "
              f"{[round(x) for x in sc_res['epochs']]}, {sc_cpu[-1]:.2f} CPU ms/img), "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    tf_med, sc_med = statistics.median(tf_rates), statistics.median(sc_rates)
    print(f"tf.data median: {tf_med:.0f} img/s, {statistics.median(tf_cpu):.2f} CPU ms per image")
    print(f"scarce median: {sc_med:.0f} img/s, {statistics.median(sc_cpu):.2f} CPU ms per image "
          f"({args.mode}, {args.workers} workers)")
    # On a shared machine wall-clock rates follow the load; CPU time per image does not.
    print(f"cpu_efficiency_ratio: {statistics.median(tf_cpu) / statistics.median(sc_cpu):.2f}")
    print(f"load average after: {os.getloadavg()}")
    if not args.skip_memory:
        mem = memory_check(data.parent / "memory")
        print(f"streaming memory: {mem['after_1k_mb']:.0f} MB after 1k records, {mem['after_all_mb']:.0f} MB after "
              f"{mem['records']} (growth {mem['growth_mb']:.1f} MB)")
    print(f"speedup: {sc_med / tf_med:.2f}")  # last line: scarce / tf.data images per second
    return 0


if __name__ == "__main__":
    sys.exit(main())
