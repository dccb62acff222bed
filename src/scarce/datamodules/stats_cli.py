"""``scarce data stats``: class pixel frequencies and class weights (median frequency, the book's log) of a dataset.

The numbers come from :mod:`scarce.data.stats`; this module only builds the dataset from the command line.
"""

from __future__ import annotations

import argparse
import json

from scarce.datamodules.segmentation import SegmentationSource, build_dataset
from scarce.data.stats import CLASS_WEIGHTINGS, class_statistics

__all__ = ["dataset_statistics", "main"]


def dataset_statistics(kind: str, root: str | None, split: str = "train", num_classes: int = 19,
                       limit: int | None = None, preset: str = "synthetic-flat", num_samples: int = 64,
                       seed: int = 0) -> dict:
    """:func:`scarce.data.stats.class_statistics` of one split of a dataset, read at its stored size."""
    spec = SegmentationSource(kind=kind, root=root, train_split=split, preset=preset, num_train=num_samples
                              if kind == "rendered" else limit, seed=seed)
    return class_statistics(build_dataset(spec, "train", None, None), num_classes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scarce data stats", description="Class pixel frequencies and "
                                     "class weights of a segmentation split: median frequency (w_c = median(f) / f_c) and the "
                                     "book's log frequency (w_c = ln(total / n_c)).")
    parser.add_argument("kind", choices=("shards", "cityscapes", "synthia", "rendered"),
                        help="shards: the output of `scarce data convert cityscapes|synthia`")
    parser.add_argument("--root", help="dataset folder (not needed for rendered)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N samples")
    parser.add_argument("--preset", default="synthetic-flat", help="rendered: the preset")
    parser.add_argument("--num-samples", type=int, default=64, help="rendered: scenes to render")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    stats = dataset_statistics(args.kind, args.root, args.split, args.num_classes, args.limit, args.preset,
                             args.num_samples)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    names = _names(args.kind, args.num_classes)
    print(f"{stats['images']} images, {stats['labelled_pixels']} labelled pixels, "
          f"{stats['ignored_pixels']} ignored")
    width = max(len(n) for n in names)
    keys = [f"{name}_weight" for name in CLASS_WEIGHTINGS]
    print(f"{'id':>3}  {'class':<{width}}  {'pixels':>12}  {'frequency':>9}" + "".join(f"  {k:>23}" for k in keys))
    for row, name in zip(stats["classes"], names):
        print(f"{row['id']:>3}  {name:<{width}}  {row['pixels']:>12}  {row['frequency']:>9.5f}"
              + "".join(f"  {row[k]:>23.3f}" for k in keys))
    return 0


def _names(kind: str, num_classes: int) -> list[str]:
    if kind == "rendered":
        from scarce.render.segmentation import rendered_class_names

        names = list(rendered_class_names())
    else:
        from scarce.data.datasets.labels import CITYSCAPES_CLASSES

        names = list(CITYSCAPES_CLASSES)
    return (names + [str(i) for i in range(len(names), num_classes)])[:num_classes]
