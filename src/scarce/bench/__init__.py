"""Benchmarks shipped with the package: ``scarce bench pipeline|render|generative|gpu``.

Each module is a program, ``main(argv) -> int``, named in :data:`scarce.cli.BENCHMARKS` and imported only when
its command runs. This package sits above ``data``, ``render`` and ``metrics`` and nothing in scarce imports it.
The scripts under ``benchmarks/`` (each ``python benchmarks/NAME.py --help``) reproduce the figures of
``benchmarks/RESULTS.md``, some of them through these modules.

- :mod:`scarce.bench.pipeline`: input pipeline throughput per stage (book 7.1).
- :mod:`scarce.bench.render`: rendering frames per second, all outputs, next to a plain pyrender loop.
- :mod:`scarce.bench.generative`: FID / KID / IS of trained VAEs and GANs next to the floor of real images.
- :mod:`scarce.bench.gpu`: the GPU acceptance run (``make gpu-check``), one table; :mod:`scarce.bench.street`
  writes the synthetic JPEG + PNG-mask shards it reads.
"""

import statistics

__all__ = ["median_range"]


def median_range(values: list[float], fmt: str = ".1f") -> str:
    """``median (min-max)`` of repeated measurements, how every benchmark here reports a figure."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"
