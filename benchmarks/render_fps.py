"""Rendering throughput (book 7.3): scarce's renderer, all outputs, next to a plain pyrender loop, same run.

The same program as ``scarce bench render`` (:mod:`scarce.bench.render`); results go to benchmarks/RESULTS.md
(section "Rendering"). Usage:

    PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/render_fps.py [--size H W] [--workers W] [--frames N]
        [--preset NAME]
"""

import sys

from scarce.bench.render import main

if __name__ == "__main__":
    sys.exit(main())
