"""How much adversarial gradient reaches FCN-8s' backbone, relative to the segmentation gradient (book 7.6).

For each placement of the domain head (pool5, output space), on rendered ``synthetic-flat`` (source) and
``photo-clutter`` (target) batches at 64x64 with the FCN-8s of ``configs/dann_fcn8s_rendered.yaml`` (its
``width_divisor`` unless given; median-frequency class weights from the measured source masks, as the config's
``ClassWeights`` callback), at initialisation, prints

    r = || d(L_dom) / d(backbone) || / || d(L_seg) / d(backbone) ||   (lambda = 1, weight = 1)

so the adversarial share of the backbone gradient is ``lambda * w * r``. The anchor, from the same run, is the
book's setting ``w = 1e-4`` next to this project's default (``w = 1``, ``lambda`` ramping to
``adaptation_weight``). Usage:

    PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/dann_segmentation_gradients.py [--batches 4] [--width-divisor 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dann_fcn8s_rendered.yaml"


def _grad_norm(params, loss) -> float:
    import torch

    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width-divisor", type=int, default=None, help="default: the config's")
    parser.add_argument("--adaptation-weight", type=float, default=None,
                        help="lambda of the project default (default: the DANNSegmentation default)")
    args = parser.parse_args(argv)

    import inspect

    import torch
    import torch.nn.functional as F
    import yaml
    from lightning.pytorch import seed_everything
    from torch.utils.data import DataLoader

    from scarce.datamodules.segmentation import SegmentationTransform
    from scarce.data.stats import median_frequency_weights
    from scarce.render.segmentation import RenderedSegmentation
    from scarce.lightning_modules.dann_segmentation import DANNSegmentation

    default_lambda = args.adaptation_weight
    if default_lambda is None:
        default_lambda = inspect.signature(DANNSegmentation).parameters["adaptation_weight"].default
    if args.width_divisor is None:
        args.width_divisor = yaml.safe_load(CONFIG.read_text())["model"]["init_args"].get("width_divisor", 1)
    n = args.batches * args.batch_size
    transform = SegmentationTransform((64, 64), train=False)
    loaders = [DataLoader(RenderedSegmentation(preset, n, seed, size=(64, 64), transforms=transform),
                          batch_size=args.batch_size, num_workers=1)
               for preset, seed in (("synthetic-flat", 0), ("photo-clutter", 100))]
    batches = list(zip(*loaders))
    masks = torch.cat([source["mask"] for source, _ in batches])
    weights = median_frequency_weights(torch.bincount(masks[masks != 255].flatten(), minlength=7).numpy())
    print(f"{len(batches)} batches of {args.batch_size} source + {args.batch_size} target images, 64x64, "
          f"FCN-8s width_divisor={args.width_divisor}, at initialisation")
    for placement in ("pool5", "output"):
        seed_everything(0)
        model = DANNSegmentation(placement=placement, num_classes=7, width_divisor=args.width_divisor,
                                 adaptation_weight=1.0)
        model.set_class_weights(weights, "median_frequency")
        model.train()
        backbone = [p for p in model.net.features.parameters()]
        ratios = []
        for source, target in batches:
            logits, domain_logits, labels = model.adversarial_step(source["image"], target["image"], 1.0)
            seg = _grad_norm(backbone, model.loss(logits, source["mask"]))
            dom = _grad_norm(backbone, F.cross_entropy(domain_logits.float(), labels))
            ratios.append(dom / seg)
        r = statistics.mean(ratios)
        print(f"{placement:>6}: r = {r:.3g} (std {statistics.pstdev(ratios):.2g} over batches); adversarial / "
              f"segmentation backbone gradient: book (w=1e-4, lambda=1) {1e-4 * r:.2g}, "
              f"scarce default (w=1, lambda -> {default_lambda:g}) {default_lambda * r:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
