"""``scarce bench generative``: FID / KID / IS of trained VAEs and GANs against the MNIST test set.

Next to each model it prints the floor, the same metrics for real training images against the test set
(what a perfect generator would score with this many samples), all in the feature space of scarce's MNIST
classifier (see :mod:`scarce.metrics.generative`).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from scarce._errors import DataNotFoundError, ScarceError
from scarce._progress import progress
from scarce.checkpoints import load_checkpoint
from scarce.data.datasets.mnist import MNIST
from scarce.metrics.generative import DEFAULT_CLASSIFIER_CKPT, GenerativeScores, feature_scale, load_classifier

__all__ = ["main", "load_generative_model", "score_images"]


def load_generative_model(path: str | Path, map_location: str = "cpu"):
    """Load a VAE or GAN LightningModule from its checkpoint (the kind is read from the weights' names)."""
    from scarce.lightning_modules.gan import GAN
    from scarce.lightning_modules.vae import VAE

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} not found; train one with "
                                "`scarce fit --config configs/vae_mnist.yaml` or `configs/gan_mnist.yaml`")
    state = load_checkpoint(path)  # weights only: a crafted file is refused before any of it runs
    keys = state.get("state_dict", {}).keys()
    if any(k.startswith("generator_ema.") for k in keys):
        cls = GAN
    elif any(k.startswith("net.encoder.") for k in keys):
        cls = VAE
    else:
        raise ScarceError(f"{path}: neither a scarce VAE nor a GAN checkpoint (no `net.encoder.*` or "
                          "`generator_ema.*` weights)")
    return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True).eval()


def _batches(images: torch.Tensor, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size]


def score_images(scores: GenerativeScores, real: torch.Tensor, fake: torch.Tensor, batch_size: int,
                 desc: str = "score") -> dict:
    """Metrics of ``fake`` against ``real`` (both ``(N, 1, 28, 28)`` in [0, 1]); progress on stderr as ``desc``."""
    scores.reset()
    batches = [(batch, True) for batch in _batches(real, batch_size)] + \
        [(batch, False) for batch in _batches(fake, batch_size)]
    for batch, is_real in progress(batches, desc=desc, unit="batches"):
        scores.update(batch, real=is_real)
    return scores.compute()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scarce bench generative", description=__doc__)
    parser.add_argument("--ckpt", action="append", default=[], metavar="PATH",
                        help="VAE or GAN checkpoint (repeat for several); none: only the floor")
    parser.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER_CKPT),
                        help="checkpoint of configs/mnist_classifier.yaml (default: %(default)s)")
    parser.add_argument("--root", default=None, help="folder with the MNIST IDX files (default: offline copy)")
    parser.add_argument("--num-samples", type=int, default=10_000, help="generated and real images per set")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gan-weights", choices=("ema", "raw", "both"), default="ema",
                        help="GAN generator to sample: the weight average, the trained weights, or both rows")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows to this JSON file")
    return parser


def _row(name: str, values: dict) -> str:
    return (f"{name:<44} {values['fid']:>9.4f} {values['kid_mean']:>9.5f} ± {values['kid_std']:.5f} "
            f"{values['is_mean']:>6.3f} ± {values['is_std']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.num_samples < args.kid_subset_size:
        raise ScarceError(f"--num-samples ({args.num_samples}) must be >= --kid-subset-size "
                          f"({args.kid_subset_size}); lower --kid-subset-size")
    torch.manual_seed(args.seed)
    classifier = load_classifier(args.classifier)
    test = MNIST(args.root, split="test", limit=args.num_samples).data.unsqueeze(1).float().div(255)
    train = MNIST(args.root, split="train", limit=args.num_samples).data.unsqueeze(1).float().div(255)
    scale = feature_scale(classifier, train, args.batch_size)
    scores = GenerativeScores(classifier, kid_subset_size=args.kid_subset_size, scale=scale)
    print(f"scarce bench generative: {len(test)} test images vs {args.num_samples} per set, classifier "
          f"{args.classifier} (feature unit {scale:.3f}), {platform.node()} ({torch.get_num_threads()} threads)")
    print(f"{'set (vs test)':<44} {'FID':>9} {'KID':>19} {'IS':>14}")
    rows = []
    start = time.perf_counter()
    floor = score_images(scores, test, train, args.batch_size, desc="floor: real train images")
    rows.append({"name": "floor: train images", **floor})
    print(_row("floor: real train images", floor), flush=True)
    for ckpt in args.ckpt:
        model = load_generative_model(ckpt)
        is_gan = hasattr(model, "generator_ema")
        variants = {"ema": [True], "raw": [False], "both": [True, False]}[args.gan_weights] if is_gan else [None]
        for ema in variants:
            generator = torch.Generator().manual_seed(args.seed)
            kwargs = {} if ema is None else {"ema": ema}
            fake = torch.cat([model.sample(len(b), generator=generator, **kwargs).cpu()
                              for b in _batches(torch.empty(args.num_samples), args.batch_size)])
            name = str(ckpt) + ("" if ema is None else (" [ema]" if ema else " [raw]"))
            values = score_images(scores, test, fake, args.batch_size, desc=name)
            rows.append({"name": name, **values})
            print(_row(name[-44:], values), flush=True)
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
