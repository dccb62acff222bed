"""scarce._allocator: the training commands' glibc malloc settings, seen in where glibc puts a block and in the
page faults of reusing it (a fresh interpreter each: the settings are process-wide)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocates a 20 MB block (numpy's buffer comes from malloc), reports whether it lies in the heap (brk) segment,
# then frees and allocates it again ten times, touching every page, and reports the page faults of that.
_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from scarce._allocator import keep_freed_memory
    print(keep_freed_memory())
elif sys.argv[1] == "cli":  # what `scarce fit` does before LightningCLI parses the command line
    import contextlib, io
    from scarce.cli import main
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(["fit", "--help"])
    print("cli")
else:
    print(None)
a = np.ones(20 * 2**20, np.uint8)
address = a.ctypes.data
heap = [line for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
low, high = (int(v, 16) for v in heap[0].split()[0].split("-")) if heap else (0, 0)
print(low <= address < high)
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(20 * 2**20, np.uint8)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, env: dict | None = None) -> tuple[str, bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], out[1] == "True", int(out[2])


def test_large_blocks_come_from_the_heap_and_are_reused_without_page_faults():
    applied, in_heap, faults = _probe("tuned")
    assert applied == "True"
    assert in_heap  # glibc's default maps a 20 MB block from the kernel (threshold 128 KiB at start)
    assert faults < 100  # 10 x 5120 pages if each block were fresh memory


def test_scarce_fit_applies_them_before_lightning_runs():
    _, in_heap, faults = _probe("cli")
    assert in_heap and faults < 100


def test_glibc_defaults_map_a_large_block_from_the_kernel():
    # What the settings change: without them the first 20 MB block is a kernel mapping of its own.
    applied, in_heap, _ = _probe("default")
    assert applied == "None" and not in_heap


@pytest.mark.parametrize("setting", [("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=100000"),
                                     ("MALLOC_MMAP_THRESHOLD_", "131072")])
def test_malloc_settings_in_the_environment_are_kept(setting):
    name, value = setting
    applied, in_heap, _ = _probe("tuned", {**os.environ, name: value})
    assert applied == "False" and not in_heap
