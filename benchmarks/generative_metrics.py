"""Offline FID / KID / IS of trained VAEs and GANs (book 7.7, 7.8) next to the floor of the same run.

The floor (anchor) is real training images scored against the test set in the same classifier feature space:
the best a generator can do with this many samples. Checkpoints default to the paths the measurement runs
write (see README "Generative models"); missing ones are listed with the command that makes them. Usage:

    .venv/bin/python benchmarks/generative_metrics.py [--num-samples 10000] [--ckpt PATH ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "runs/vae_mnist/checkpoints/best.ckpt": "scarce fit --config configs/vae_mnist.yaml",
    "runs/gan_mnist_z2/last.ckpt": "scarce fit --config configs/gan_mnist.yaml (copy last.ckpt here)",
    "runs/gan_mnist_z64/last.ckpt": "scarce fit --config configs/gan_mnist.yaml --model.noise_dim 64 (copy last.ckpt here)",
}
CLASSIFIER = "runs/mnist_classifier/checkpoints/best.ckpt"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--ckpt", nargs="*", default=None, help="checkpoints (default: the measurement runs')")
    parser.add_argument("--classifier", default=str(REPO / CLASSIFIER))
    args = parser.parse_args(argv)
    if not Path(args.classifier).is_file():
        print(f"generative_metrics: no classifier checkpoint at {args.classifier}, so nothing can be measured: run "
              "`scarce fit --config configs/mnist_classifier.yaml` first", file=sys.stderr)
        return 1
    ckpts = args.ckpt
    if ckpts is None:
        ckpts = []
        for path, command in DEFAULTS.items():
            if (REPO / path).is_file():
                ckpts.append(str(REPO / path))
            else:
                print(f"skipping {path} (missing; make it with `{command}`)", file=sys.stderr)
    if not ckpts:
        print("generative_metrics: no VAE or GAN checkpoint to measure (only the floor would be); give --ckpt PATH "
              "or make the ones listed above", file=sys.stderr)
        return 1
    from scarce.bench.generative import main as bench

    return bench([*sum((["--ckpt", c] for c in ckpts), []), "--classifier", args.classifier,
                  "--num-samples", str(args.num_samples)])


if __name__ == "__main__":
    sys.exit(main())
