"""scarce's input pipeline vs the strongest tf.data pipeline on the same JPEG shards and cores (book 7.1).

Every row does the same work per image: read the 512x256 JPEG (quality 90) records -> shuffle -> parse the
Example (image bytes and int64 label) -> random crop window of s x the height and width (s uniform in
[0.8, 1.0], uniform position) -> decode -> resize to 224x224 (bilinear, no antialias) -> random horizontal flip
(p = 0.5) -> float32 in [0, 1] -> batch 32 with the labels. Rows:

* ``tf.data expert`` (**the anchor**, TensorFlow 2.21 in ``.venv-tf``, a subprocess): ``list_files`` ->
  ``interleave(TFRecordDataset, AUTOTUNE)`` -> ``shuffle(1000)`` of the *raw records* -> ``map(parse,
  extract_jpeg_shape, decode_and_crop_jpeg (decodes only the window), resize, flip after resizing, /255;
  AUTOTUNE)`` -> ``batch(32)`` -> ``prefetch(AUTOTUNE)``, ``deterministic=False``.
* ``tf.data book``: the book's recipe: ``decode_jpeg`` of the whole image, flip, ``random_crop``, resize in the
  ``map``, then ``shuffle(1000)`` of the *decoded* images.
* ``scarce``: ``scarce.bench.pipeline.ThreadedJpegPipeline`` (``--threads`` decoding threads): shuffle 1000 raw
  records, crop window drawn from the header and decoded alone (libjpeg-turbo partial decoding, the same calls
  as ``decode_and_crop_jpeg``), OpenCV resize, flip after resizing, float into a channels-last batch.
* ``scarce whole decode``: the same with the whole image decoded, then cut (what scarce did before).
* ``decode limit (whole)`` / ``decode limit (window)``: libjpeg-turbo decoding alone, the JPEG bytes already in
  memory, the same crop windows, on ``--threads`` threads: no reading, parsing, resizing or batching. The
  scarce rows are reported as a share of these.

Each run is a fresh process pinned to ``--cores`` (taskset): one warm-up epoch (untimed; its batches feed the
output check), then whole epochs until at least ``--images`` images, timed from the first batch request of
the first timed epoch; CPU time (``time.process_time``, all threads of the process) per image too. Every round
runs every row once, in an order drawn at random (``--seed``), so load changes hit all rows alike; ratios are
taken per round (scarce / tf.data expert, same round), then the median and the min-max spread.

Output check (from the warm-up epochs, each side's own outputs): batch shapes, dtype, value range, mean
pixel, label histogram, and the crop scale each side drew (h / H and w / W of every window: the same
distribution on both sides, compared with a two-sample Kolmogorov-Smirnov test). The script fails (exit 1)
when the check fails. The last line is ``speedup: X`` (median per-round scarce / tf.data expert images per
second).

    .venv/bin/python benchmarks/pipeline_vs_tfdata.py [--rounds 5] [--images 20000] [--threads 2] [--cores 0,1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TF_PYTHON = ROOT / ".venv-tf" / "bin" / "python"
CROP_SCALE = (0.8, 1.0)
SIZE = (224, 224)
SHUFFLE = 1000

# Both tf.data rows. argv: pattern records images batch h w threads recipe lo hi shuffle
TF_CODE = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
pattern, records, images, batch, h, w, threads = sys.argv[1], *map(int, sys.argv[2:8])
recipe, lo, hi, shuffle = sys.argv[8], float(sys.argv[9]), float(sys.argv[10]), int(sys.argv[11])
AUTOTUNE = tf.data.AUTOTUNE
spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

def expert(raw):  # shuffle raw records before map; decode only the crop window; flip after resizing
    ex = tf.io.parse_single_example(raw, spec)
    shape = tf.io.extract_jpeg_shape(ex["image"])  # the header only
    s = tf.random.uniform([], lo, hi)
    crop = tf.maximum(tf.cast(tf.cast(shape[:2], tf.float32) * s, tf.int32), 1)
    top = tf.random.uniform([], 0, shape[0] - crop[0] + 1, dtype=tf.int32)
    left = tf.random.uniform([], 0, shape[1] - crop[1] + 1, dtype=tf.int32)
    img = tf.io.decode_and_crop_jpeg(ex["image"], tf.stack([top, left, crop[0], crop[1]]), channels=3)
    img = tf.image.resize(img, (h, w))  # bilinear, float32 in [0, 255]
    img = tf.image.random_flip_left_right(img)
    scale = tf.cast(crop, tf.float32) / tf.cast(shape[:2], tf.float32)
    return {"image": img / 255.0, "label": ex["label"], "crop": scale}

def book(raw):  # the book's order: decode the whole image, flip, random_crop, resize
    ex = tf.io.parse_single_example(raw, spec)
    img = tf.io.decode_jpeg(ex["image"], channels=3)
    img = tf.image.random_flip_left_right(img)
    dims = tf.shape(img)[:2]
    crop = tf.maximum(tf.cast(tf.cast(dims, tf.float32) * tf.random.uniform([], lo, hi), tf.int32), 1)
    img = tf.image.random_crop(img, tf.concat([crop, [3]], 0))
    img = tf.image.resize(img, (h, w))
    return {"image": img / 255.0, "label": ex["label"], "crop": tf.cast(crop, tf.float32) / tf.cast(dims, tf.float32)}

files = tf.data.Dataset.list_files(pattern, shuffle=True)
ds = files.interleave(tf.data.TFRecordDataset, num_parallel_calls=AUTOTUNE, deterministic=False)
if recipe == "expert":
    ds = ds.shuffle(shuffle).map(expert, num_parallel_calls=AUTOTUNE, deterministic=False)
else:
    ds = ds.map(book, num_parallel_calls=AUTOTUNE).shuffle(shuffle)
ds = ds.batch(batch).prefetch(AUTOTUNE)
options = tf.data.Options()
options.deterministic = recipe != "expert"
ds = ds.with_options(options)

check = {"shapes": set(), "dtypes": set(), "min": 1e9, "max": -1e9, "sum": 0.0, "pixels": 0, "labels": [], "crops": []}
for b in ds:  # warm-up epoch: untimed, its outputs are the check
    x = b["image"].numpy()
    check["shapes"].add(list(x.shape[1:]).__repr__()); check["dtypes"].add(str(x.dtype))
    check["min"], check["max"] = min(check["min"], float(x.min())), max(check["max"], float(x.max()))
    check["sum"] += float(x.sum(dtype=np.float64)); check["pixels"] += x.size
    check["labels"] += b["label"].numpy().tolist(); check["crops"] += b["crop"].numpy().tolist()
done, cpu0, start = 0, time.process_time(), time.perf_counter()
while done < images:
    for b in ds:
        done += int(b["image"].shape[0])
wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
check["shapes"], check["dtypes"] = sorted(check["shapes"]), sorted(check["dtypes"])
print("RESULT " + json.dumps({"images": done, "seconds": wall, "cpu_ms_per_image": cpu * 1e3 / done,
                              "check": check}))
"""

# scarce rows and the decode limits. argv: pattern records images batch h w threads row lo hi shuffle
SCARCE_CODE = r"""
import json, random, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from scarce import shards as tfr
from scarce.shards.images import WINDOW_DECODE, decode_jpeg_window, image_size
pattern, records, images, batch, h, w, threads = sys.argv[1], *map(int, sys.argv[2:8])
row, lo, hi, shuffle = sys.argv[8], float(sys.argv[9]), float(sys.argv[10]), int(sys.argv[11])
files = tfr.expand_files(pattern)
check = {"shapes": set(), "dtypes": set(), "min": 1e9, "max": -1e9, "sum": 0.0, "pixels": 0, "labels": [], "crops": []}

if row.startswith("scarce"):
    import cv2, torch  # the decode limits need neither
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from scarce.bench.pipeline import PipelineConfig, ThreadedJpegPipeline
    cfg = PipelineConfig(files, "image", batch, (h, w), threads, shuffle_buffer=shuffle, seed=random.randrange(2**31),
                         window_decode=row == "scarce", label_key="label")
    crops, draw = [], cfg.crop.window
    def window(height, width):  # records each drawn crop for the check (a list append: negligible)
        top, left, ch, cw = draw(height, width)
        crops.append((ch / height, cw / width))
        return top, left, ch, cw
    cfg.crop.window = window
    epoch_batches = ThreadedJpegPipeline(cfg).epoch
else:  # decode limits: the JPEG bytes in memory, windows drawn as the pipeline draws them, no other work
    jpegs = [tfr.parse_example(r, {"image": "bytes"})["image"][0] for f in files for r in tfr.iter_raw_records(f)]
    sizes = [image_size(j) for j in jpegs]
    partial = row == "decode-window"
    def decode_chunk(chunk):
        for k in chunk:
            height, width = sizes[k]
            s = random.uniform(lo, hi)
            ch, cw = max(1, int(height * s)), max(1, int(width * s))
            window = (random.randint(0, height - ch), random.randint(0, width - cw), ch, cw)
            decode_jpeg_window(jpegs[k], window, size=sizes[k], partial=partial)
        return len(chunk)
    def epoch_batches(e):
        order = list(range(len(jpegs)))
        random.shuffle(order)
        with ThreadPoolExecutor(threads) as pool:
            for n in pool.map(decode_chunk, [order[i:i + batch] for i in range(0, len(order), batch)]):
                yield {"n": n}

for b in epoch_batches(0):  # warm-up epoch: untimed, its outputs are the check
    if "image" not in b:
        continue
    x = b["image"].numpy()
    check["shapes"].add(repr([x.shape[2], x.shape[3], x.shape[1]])); check["dtypes"].add(str(x.dtype))
    check["min"], check["max"] = min(check["min"], float(x.min())), max(check["max"], float(x.max()))
    check["sum"] += float(x.sum(dtype=np.float64)); check["pixels"] += x.size
    check["labels"] += b["label"].tolist()
if row.startswith("scarce"):
    check["crops"] = [list(c) for c in crops]
done, e, cpu0, start = 0, 1, time.process_time(), time.perf_counter()
while done < images:
    for b in epoch_batches(e):
        done += b["image"].shape[0] if "image" in b else b["n"]
    e += 1
wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
check["shapes"], check["dtypes"] = sorted(check["shapes"]), sorted(check["dtypes"])
print("RESULT " + json.dumps({"images": done, "seconds": wall, "cpu_ms_per_image": cpu * 1e3 / done,
                              "check": check, "window_decode": WINDOW_DECODE}))
"""

# row name -> (python, code, recipe / row argument)
ROWS = {
    "tf.data expert": ("tf", TF_CODE, "expert"),
    "tf.data book": ("tf", TF_CODE, "book"),
    "scarce": ("scarce", SCARCE_CODE, "scarce"),
    "scarce whole decode": ("scarce", SCARCE_CODE, "scarce-whole"),
    "decode limit (whole)": ("scarce", SCARCE_CODE, "decode-whole"),
    "decode limit (window)": ("scarce", SCARCE_CODE, "decode-window"),
}
ANCHOR = "tf.data expert"


def run_row(name: str, pattern: str, records: int, args: argparse.Namespace) -> dict:
    """One run of one row in a fresh process; returns its RESULT dict plus ``images_per_second``."""
    side, code, arg = ROWS[name]
    python = str(TF_PYTHON) if side == "tf" else sys.executable
    cmd = [python, "-c", code, pattern, str(records), str(args.images), str(args.batch_size), str(SIZE[0]),
           str(SIZE[1]), str(args.threads), arg, str(CROP_SCALE[0]), str(CROP_SCALE[1]), str(SHUFFLE)]
    if args.cores:
        cmd = ["taskset", "-c", args.cores] + cmd
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["images_per_second"] = result["images"] / result["seconds"]
    return result


def output_check(checks: dict[str, dict], records: int, batch: int) -> list[str]:
    """Problems found in the pipelines' warm-up outputs (empty: both sides provably do the same work)."""
    from scipy.stats import ks_2samp

    problems = []
    ref_labels = None
    for name, c in checks.items():
        if c["shapes"] != [repr([SIZE[0], SIZE[1], 3])]:
            problems.append(f"{name}: image shapes {c['shapes']}, expected [{SIZE[0]}, {SIZE[1]}, 3]")
        if c["dtypes"] != ["float32"]:
            problems.append(f"{name}: dtypes {c['dtypes']}, expected float32")
        if not (0 <= c["min"] and c["max"] <= 1 and c["max"] > 0.9):
            problems.append(f"{name}: values in [{c['min']:.3f}, {c['max']:.3f}], expected within [0, 1]")
        if len(c["labels"]) != records:
            problems.append(f"{name}: {len(c['labels'])} labels in an epoch, expected {records}")
        labels = sorted(c["labels"])
        ref_labels = labels if ref_labels is None else ref_labels
        if labels != ref_labels:
            problems.append(f"{name}: label multiset differs from {next(iter(checks))}'s")
        crops = [s for pair in c["crops"] for s in pair]
        if len(c["crops"]) != records:
            problems.append(f"{name}: {len(c['crops'])} crop windows in an epoch, expected {records}")
        elif not (CROP_SCALE[0] - 0.01 <= min(crops) and max(crops) <= CROP_SCALE[1]):
            problems.append(f"{name}: crop scales in [{min(crops):.3f}, {max(crops):.3f}], expected {CROP_SCALE}")
    names = list(checks)
    for other in names[1:]:
        a = [s for pair in checks[names[0]]["crops"] for s in pair[:1]]
        b = [s for pair in checks[other]["crops"] for s in pair[:1]]
        if a and b and ks_2samp(a, b).pvalue < 1e-4:
            problems.append(f"crop scale distributions of {names[0]} and {other} differ (KS p < 1e-4)")
        mean_a = checks[names[0]]["sum"] / checks[names[0]]["pixels"]
        mean_b = checks[other]["sum"] / checks[other]["pixels"]
        if abs(mean_a - mean_b) > 0.01:
            problems.append(f"mean pixel {mean_a:.4f} ({names[0]}) vs {mean_b:.4f} ({other}): not the same images")
    return problems


def _summary(c: dict) -> str:
    crops = [p[0] for p in c["crops"]]
    crop = (f"crop scale mean {statistics.fmean(crops):.3f} sd {statistics.pstdev(crops):.3f} "
            f"[{min(crops):.3f}, {max(crops):.3f}]") if crops else "no crops"
    return (f"shapes {c['shapes']} (h, w, c) {c['dtypes']}, values [{c['min']:.3f}, {c['max']:.3f}], mean pixel "
            f"{c['sum'] / max(c['pixels'], 1):.4f}, {len(c['labels'])} labels (sum {sum(c['labels'])}), {crop}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/scarce-bench/jpeg", help="shard folder (created if missing)")
    parser.add_argument("--records", type=int, default=2000, help="records written when --data is created")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20_000, help="timed images per run (whole epochs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="scarce's decoding threads and the decode limits'")
    parser.add_argument("--cores", default=None, help="taskset CPU list for every run, e.g. 0,1")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of: {', '.join(ROWS)}")
    parser.add_argument("--seed", type=int, default=0, help="seeds the order of the rows in each round")
    parser.add_argument("--skip-memory", action="store_true", help="skip the streaming memory check")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"unknown rows {unknown}; valid: {list(ROWS)}")
    if not TF_PYTHON.exists():
        print(f"{TF_PYTHON} missing (`make tf-env` builds it): the tf.data rows are skipped", flush=True)
        rows = [r for r in rows if ROWS[r][0] != "tf"]
    sys.path.insert(0, str(ROOT / "src"))
    from scarce import shards as tfr
    from scarce.bench.pipeline import make_jpeg_shards
    from scarce.shards.images import WINDOW_DECODE

    data = Path(args.data)
    if not (data / "bench.manifest.json").is_file():
        print(f"writing {args.records} JPEG records (512x256, q90) to {data} ...", flush=True)
        make_jpeg_shards(data, args.records, args.shards)
    pattern = str(data / "bench-*.tfrecord")
    records = sum(1 for f in tfr.expand_files(pattern) for _ in tfr.iter_raw_records(f))
    print(f"{records} records, {args.images}+ timed images per run after a warm-up epoch, {args.threads} threads, "
          f"cores {args.cores or 'all'}, window decoding {'on' if WINDOW_DECODE else 'OFF (not built)'}; "
          f"load average before: {os.getloadavg()}", flush=True)
    order_rng = random.Random(args.seed)
    results: dict[str, list[dict]] = {r: [] for r in rows}
    for k in range(args.rounds):
        order = rows[:]
        order_rng.shuffle(order)
        line = []
        for name in order:
            res = run_row(name, pattern, records, args)
            results[name].append(res)
            line.append(f"{name} {res['images_per_second']:.0f} img/s ({res['cpu_ms_per_image']:.2f} CPU ms/img)")
        print(f"round {k} (load {os.getloadavg()[0]:.1f}): " + "; ".join(line), flush=True)

    checks = {name: results[name][0]["check"] for name in rows if "crops" in results[name][0]["check"]
              and results[name][0]["check"]["labels"]}
    print("output check (warm-up epoch of each side's first run):")
    for name, c in checks.items():
        print(f"  {name}: {_summary(c)}")
    problems = output_check(checks, records, args.batch_size)

    def per_round(num: str, den: str, key: str = "images_per_second") -> list[float]:
        return [a[key] / b[key] for a, b in zip(results[num], results[den])]

    print(f"{'row':<24} {'median img/s':>12} {'CPU ms/img':>10}   per round img/s")
    for name in rows:
        rates = [r["images_per_second"] for r in results[name]]
        cpu = statistics.median(r["cpu_ms_per_image"] for r in results[name])
        print(f"{name:<24} {statistics.median(rates):>12.0f} {cpu:>10.2f}   {[round(x) for x in rates]}")

    def spread(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f}x (per round {min(xs):.2f}-{max(xs):.2f}: {[round(x, 2) for x in xs]})"

    for name in ("scarce", "scarce whole decode", "tf.data book"):
        if name in rows and ANCHOR in rows:
            print(f"{name} / {ANCHOR}: img/s {spread(per_round(name, ANCHOR))}; CPU time per image "
                  f"{spread(per_round(ANCHOR, name, 'cpu_ms_per_image'))}")
    for name, limit in (("scarce", "decode limit (window)"), ("scarce whole decode", "decode limit (whole)"),
                        ("scarce", "decode limit (whole)")):
        if name in rows and limit in rows:
            shares, cpu_shares = per_round(name, limit), per_round(limit, name, "cpu_ms_per_image")
            print(f"{name} as a share of {limit}: {100 * statistics.median(shares):.0f} % of its img/s (per round "
                  f"{100 * min(shares):.0f}-{100 * max(shares):.0f} %), {100 * statistics.median(cpu_shares):.0f} % "
                  f"in CPU time per image (per round {100 * min(cpu_shares):.0f}-{100 * max(cpu_shares):.0f} %)")
    print(f"load average after: {os.getloadavg()}")
    if not args.skip_memory:
        mem = memory_check(data.parent / "memory")
        print(f"streaming memory: {mem['after_1k_mb']:.0f} MB after 1k records, {mem['after_all_mb']:.0f} MB after "
              f"{mem['records']} (growth {mem['growth_mb']:.1f} MB)")
    if problems:
        print("OUTPUT CHECK FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("output check: passed (same shapes, dtype, range, labels, crop-scale distribution, mean pixel)")
    if "scarce" in rows and ANCHOR in rows:
        print(f"speedup: {statistics.median(per_round('scarce', ANCHOR)):.2f}")  # last line
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
