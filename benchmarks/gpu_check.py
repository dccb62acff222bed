"""GPU acceptance run (issue 15): gpu tests, pipeline CPU vs nvJPEG, render, FCN-8s model-only vs fit, MFU.

One call, one table, about 6 minutes on one H100 / H200; without CUDA the CPU rows run and the GPU rows say why
they are skipped. The program is ``scarce bench gpu`` (:mod:`scarce.bench.gpu`); its table goes to
benchmarks/RESULTS.md ("GPU acceptance run"). Usage:

    make gpu-check                                   # = python benchmarks/gpu_check.py
    source .device/setup.sh && make gpu-check        # on the GPU machine (../shared/device/prepare first)
    python benchmarks/gpu_check.py --help            # sizes, steps, --skip ROW ...
"""

import sys


def main(argv: list[str] | None = None) -> int:
    from scarce.bench.gpu import main as gpu_check  # on call: the processes it spawns re-import this file

    return gpu_check(argv)


if __name__ == "__main__":
    sys.exit(main())
