"""What holds FCN-8s back on the embedded realism gap: one plain-PyTorch training loop, one change at a time.

The loop is the embedded segmentation config without Lightning (FCN-8s at ``--width-divisor``, Adam with the
poly schedule, batch 8, the book's joint augmentation from ``scarce.data.transforms.train_transform``, the
cross-entropy weighting of ``--weights``), trained on scenes rendered once and cached as uint8 arrays under
``--cache`` (4000 training scenes of ``--train-preset`` from seed 0 (100 for photo-clutter, the target's training
seed), validation scenes: 64 synthetic-flat from seed 1 and 64 photo-clutter from seed 101, the embedded configs'
validation scenes). It prints the source and target validation mIoU and pixel accuracy every quarter of training
and appends one JSON line to ``--log``; first it prints the anchor, predicting background everywhere, on the same
validation scenes (``--steps 0``: only that). The settings chosen from it went into ``configs/fcn8s_rendered.yaml``;
``docs/realism_gap.md`` has the table.

Usage (one CPU core per run; the first run renders the caches):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_budget_ablation.py --size 64 --weights median_frequency
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmentation_budget_ablation.py --size 128 --batch-norm \\
        --weights none --steps 6000 [--train-preset photo-clutter]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NUM_TRAIN, NUM_VAL = 4000, 64
# (preset, seed) of the cached scene sets: the embedded configs' training and validation scenes.
TRAIN_SEEDS = {"synthetic-flat": 0, "photo-clutter": 100}
VAL_SETS = {"source": ("synthetic-flat", 1), "target": ("photo-clutter", 101)}
RENDER_SIZE = 128  # caches are rendered once at this size and resized down for smaller --size


def _cache_file(cache: Path, preset: str, seed: int, count: int) -> Path:
    return cache / f"{preset}_seed{seed}_{count}x{RENDER_SIZE}.npz"


def render_cache(preset: str, seed: int, count: int, path: Path) -> None:
    """Render ``count`` scenes into ``path`` (uint8 images and masks) in a child process (GL stays out of here)."""
    code = (
        "import sys, numpy as np\n"
        "from scarce.render import RenderedDataset\n"
        "preset, seed, count, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]\n"
        "ds = RenderedDataset(preset, count, seed, size=(size, size))\n"
        "images = np.zeros((count, size, size, 3), np.uint8); masks = np.zeros((count, size, size), np.uint8)\n"
        "for i in range(count):\n"
        "    r = ds.render(i); images[i] = r['rgb']; masks[i] = r['semantic']\n"
        "np.savez(out + '.tmp.npz', images=images, masks=masks)\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code, preset, str(seed), str(count), str(RENDER_SIZE), str(path)[:-4]],
                   check=True, env=dict(os.environ, PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM", "egl")))
    os.replace(str(path)[:-4] + ".tmp.npz", path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-preset", default="synthetic-flat", choices=sorted(TRAIN_SEEDS))
    parser.add_argument("--size", type=int, default=64, help="square input size (<= 128)")
    parser.add_argument("--width-divisor", type=int, default=8)
    parser.add_argument("--batch-norm", action="store_true", help="FCN-8s on the vgg16_bn layout")
    parser.add_argument("--weights", default="median_frequency", choices=("median_frequency", "log_frequency", "none"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC weights and inputs (model.init_args.channels_last: same arithmetic, faster on CPU)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast for the forward pass, loss in float32 (as trainer.precision bf16-mixed)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout after fc6 and fc7 (FCN8s default 0.5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "ablation_cache")
    parser.add_argument("--log", type=Path, default=REPO / "runs" / "segmentation_budget_ablation.jsonl")
    args = parser.parse_args(argv)
    if not 8 <= args.size <= RENDER_SIZE or args.steps < 0:
        parser.error(f"--size must be in 8..{RENDER_SIZE} and --steps >= 0")

    sets = {"train": (args.train_preset, TRAIN_SEEDS[args.train_preset], NUM_TRAIN)}
    sets.update({name: (preset, seed, NUM_VAL) for name, (preset, seed) in VAL_SETS.items()})
    for preset, seed, count in sets.values():
        path = _cache_file(args.cache, preset, seed, count)
        if not path.is_file():
            render_cache(preset, seed, count, path)

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torchvision import tv_tensors

    from scarce.data.stats import CLASS_WEIGHTINGS
    from scarce.data.transforms import train_transform
    from scarce.metrics.segmentation import SegmentationMetrics
    from scarce.nets.fcn8s import FCN8s

    torch.manual_seed(args.seed)
    num_classes = 7

    def load(preset: str, seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        data = np.load(_cache_file(args.cache, preset, seed, count))
        x, y = torch.from_numpy(data["images"]).permute(0, 3, 1, 2), torch.from_numpy(data["masks"]).long()
        if args.size != RENDER_SIZE:
            x = F.interpolate(x.float(), size=(args.size, args.size), mode="bilinear", antialias=True,
                              align_corners=False).round().clamp(0, 255).byte()
            y = F.interpolate(y[:, None].float(), size=(args.size, args.size), mode="nearest")[:, 0].long()
        return x, y

    xs, ys = load(*sets["train"])
    vals = {name: load(*sets[name]) for name in VAL_SETS}
    net = FCN8s(num_classes, width_divisor=args.width_divisor, batch_norm=args.batch_norm, dropout=args.dropout)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    counts = torch.bincount(ys.flatten(), minlength=num_classes)[:num_classes].numpy()
    weights = torch.ones(num_classes) if args.weights == "none" else \
        torch.as_tensor(CLASS_WEIGHTINGS[args.weights](counts), dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, args.steps)) ** 0.9)
    augment = train_transform([args.size, args.size])

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = [], []
        for i in torch.randint(0, len(xs), (args.batch_size,)).tolist():
            s = augment({"image": tv_tensors.Image(xs[i]), "mask": tv_tensors.Mask(ys[i])})
            image = s["image"]
            images.append(image.float() / 255 if image.dtype == torch.uint8 else image)
            masks.append(s["mask"].long())
        return torch.stack(images), torch.stack(masks)

    def evaluate(predict=None) -> dict[str, dict[str, float]]:
        """Source and target validation mIoU and pixel accuracy of the network, or of ``predict(images)``."""
        net.eval()
        out = {}
        with torch.no_grad():
            for name, (x, y) in vals.items():
                metric = SegmentationMetrics(num_classes)
                for i in range(0, len(x), 32):
                    images = x[i:i + 32].float() / 255
                    metric.update(net(images).argmax(1) if predict is None else predict(images), y[i:i + 32])
                result = metric.compute()
                out[name] = {"miou": round(float(result["miou"]), 4), "acc": round(float(result["acc"]), 4)}
        net.train()
        return out

    # The anchor, on the same validation scenes at the same size: background (class 0) everywhere.
    anchor = evaluate(lambda images: torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.long))
    print(f"anchor, background everywhere: {anchor}", flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = batch()
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, weight=weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, args.steps // 4) == 0:
            print(f"step {step}: loss {loss.item():.3f} {evaluate()} {time.perf_counter() - start:.0f} s", flush=True)
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "anchor": anchor,
              "result": evaluate(),
              "seconds": round(time.perf_counter() - start), "threads": torch.get_num_threads()}
    print(json.dumps(record), flush=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
