"""Rendering throughput (book 7.3): scarce's renderer, all outputs, next to plain pyrender drawing the same scenes.

The same program as ``scarce bench render`` (:mod:`scarce.bench.render`, whose docstring says exactly what differs
between the two sides); results go to benchmarks/RESULTS.md (section "Rendering"). Usage:

    PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/render_fps.py [--size H W] [--workers W] [--frames 400]
        [--repeats 5] [--chunk 50] [--preset NAME] [--msaa N ...] [--passes N] [--no-anchor]
"""

import sys

from scarce.bench.render import main

if __name__ == "__main__":
    sys.exit(main())
