"""Capacity sheet (docs/scaling.md): CPU cores per GPU for the CPU decode path, when nvJPEG is needed, and the
object-storage bandwidth per node, for FCN-8s at 256x512 in bf16, from per-image costs measured in this run.

The per-image CPU costs are ``scarce bench pipeline``'s stage profile (:func:`scarce.bench.pipeline.profile_stages`,
CPU time of one core, so other jobs on a shared machine disturb them little) on synthetic street-like JPEG + PNG-mask
shards (:mod:`scarce.bench.street`) stored at three sizes, each trained at 256x512. Record sizes come from the
shards' manifests; since synthetic pictures compress better than photographs, the bytes per pixel of the
scikit-image photographs at the same JPEG quality are measured too and used for the bandwidth. The GPU rates are
inputs (measured on an H200, see benchmarks/RESULTS.md): FCN-8s 1000 images/s (bf16, channels-last), 1200
compiled; nvJPEG 10,000 images/s. Usage:

    .venv/bin/python benchmarks/capacity_sheet.py [--gpu-rate 1000 1200] [--gpus-per-node 8] [--records 120]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time

SOURCES = ((256, 512), (512, 1024), (1024, 2048))  # stored sizes: quarter, half and full Cityscapes resolution
TRAIN_SIZE = (256, 512)
NVJPEG_RATE = 10_000.0  # images/s of one H200 (benchmarks/RESULTS.md)
HEADROOM = 1.5  # cores provisioned per core-second of work: workers stall on I/O, the main process needs its own


def photo_bytes_per_pixel(quality: int = 90) -> float:
    """JPEG bytes per pixel of scikit-image's colour photographs at ``quality``."""
    import numpy as np
    import skimage.data
    from PIL import Image

    sizes, pixels = 0, 0
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"):
        photo = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=quality)
        sizes, pixels = sizes + buf.tell(), pixels + photo.shape[0] * photo.shape[1]
    return sizes / pixels


def measure(source: tuple[int, int], records: int, workers: int) -> dict:
    """Stage costs (ms per image, one core) and mean JPEG / PNG / record bytes of street shards stored at
    ``source``."""
    from scarce.bench.pipeline import PipelineConfig, profile_stages
    from scarce.bench.street import make_segmentation_shards
    from scarce.shards.example import parse_example
    from scarce.shards.tfrecord import expand_files, iter_raw_records

    with tempfile.TemporaryDirectory() as tmp:
        make_segmentation_shards(tmp, records, source, workers)
        files = expand_files(os.path.join(tmp, "train-*.tfrecord"))
        raw = [data for f in files for data in iter_raw_records(f)]
        parsed = [parse_example(data, {"image": "bytes", "mask": "bytes"}) for data in raw]
        cfg = PipelineConfig(files, size=TRAIN_SIZE)
        stages = profile_stages(cfg, n=records, mask_key="mask")
    return {"stages": stages, "record_bytes": sum(map(len, raw)) / len(raw),
            "jpeg_bytes": sum(len(p["image"][0]) for p in parsed) / len(raw),
            "mask_bytes": sum(len(p["mask"][0]) for p in parsed) / len(raw)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-rate", type=float, nargs="+", default=[1000.0, 1200.0],
                        help="FCN-8s images/s per GPU (default: H200 bf16 channels-last, eager and compiled)")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--records", type=int, default=120, help="records per stored size")
    parser.add_argument("--workers", type=int, default=1, help="processes writing the shards")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"# capacity sheet  {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  {os.cpu_count()} CPUs  load {load[0]:.2f} {load[1]:.2f}")
    photo_bpp = photo_bytes_per_pixel()
    rows = []
    for source in SOURCES:
        m = measure(source, args.records, args.workers)
        st = m["stages"]
        cpu_path = (st["read"] + st["parse"] + st["decode+augment fused (reduced-scale when exact)"]
                    + st["mask: PNG decode + crop + nearest resize"] + st["collate+float"])
        gpu_path = st["read"] + st["parse"] + st["mask: PNG decode + crop + nearest resize"]
        # A photograph's JPEG instead of the synthetic one; the mask and the framing as measured.
        photo_record = m["record_bytes"] - m["jpeg_bytes"] + photo_bpp * source[0] * source[1]
        rows.append((source, st, cpu_path, gpu_path, m["record_bytes"], photo_record))
        print(f"\n## stored {source[0]}x{source[1]}, trained {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}: CPU ms per image, "
              "one core")
        for stage, ms in st.items():
            print(f"  {stage:<48} {ms:7.3f}")
        print(f"  {'=> CPU decode path (read+parse+fused+mask+collate)':<48} {cpu_path:7.3f}")
        print(f"  {'=> nvJPEG path, CPU side (read+parse+mask)':<48} {gpu_path:7.3f}")
        print(f"  record: {m['record_bytes'] / 1e3:.0f} kB synthetic (JPEG {m['jpeg_bytes'] / 1e3:.0f} kB, mask "
              f"{m['mask_bytes'] / 1e3:.1f} kB); {photo_record / 1e3:.0f} kB with a photograph's "
              f"{photo_bpp:.2f} B/pixel at JPEG quality 90")
    print(f"\n## sheet: FCN-8s {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, {args.gpus_per_node} GPUs per node, "
          f"{HEADROOM}x core headroom, nvJPEG {NVJPEG_RATE:.0f} img/s")
    print(f"{'stored':<10} {'img/s/GPU':>9} {'CPU-path cores/GPU':>18} {'nvJPEG cores/GPU':>16} "
          f"{'nvJPEG GPU share':>16} {'MB/s per node (photo)':>22}")
    for source, _, cpu_path, gpu_path, _, photo_record in rows:
        for rate in args.gpu_rate:
            print(f"{source[0]}x{source[1]:<6} {rate:>9.0f} {rate * cpu_path / 1e3 * HEADROOM:>18.1f} "
                  f"{rate * gpu_path / 1e3 * HEADROOM:>16.1f} {rate / NVJPEG_RATE:>16.0%} "
                  f"{rate * args.gpus_per_node * photo_record / 1e6:>22.0f}")
    print(json.dumps({"photo_bytes_per_pixel": round(photo_bpp, 3),
                      "rows": [{"stored": list(s), "cpu_path_ms": round(c, 3), "nvjpeg_cpu_ms": round(g, 3),
                                "record_bytes_synthetic": round(b), "record_bytes_photo": round(p)}
                               for s, _, c, g, b, p in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
