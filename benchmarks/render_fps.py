"""Rendering throughput (book 7.3): scarce's renderer, all outputs, next to a plain pyrender loop, same run.

    python benchmarks/render_fps.py [--size H W] [--workers W] [--frames N] [--preset NAME]

Same as ``scarce bench render``; results go to benchmarks/RESULTS.md (section "Rendering").
"""

import sys

from scarce.render.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
