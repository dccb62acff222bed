"""Headless OpenGL for pyrender: pick a backend, apply the numpy / PyOpenGL workarounds, then import.

Everything in :mod:`scarce.render` imports pyrender through :func:`import_pyrender`, never directly, because
PyOpenGL reads ``PYOPENGL_PLATFORM`` once, at its first import, and pyrender 0.1.45 uses ``np.infty``
(removed in numpy 2) at import time.

Backend choice (``PYOPENGL_PLATFORM`` unset): EGL first (NVIDIA, or Mesa llvmpipe on CPU), then OSMesa.
Each is tried in a *subprocess* that creates a tiny context and renders one frame. Probing in-process would
leave an EGL context in this process, and a forked DataLoader worker of a process that ever held one hangs
forever in its own ``eglInitialize`` (measured here with Mesa 22 / llvmpipe, even after deleting the context).
The answer is stored in ``os.environ`` so that child processes inherit it without probing again.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import threading

from scarce._errors import ScarceError

__all__ = [
    "BACKENDS",
    "DEBIAN_PACKAGES",
    "GLBackendError",
    "context_created_before_fork",
    "import_pyrender",
    "mark_context_created",
    "select_backend",
]

BACKENDS = ("egl", "osmesa")
# What each backend needs on Debian / Ubuntu (the Makefile's gl-deps installs the EGL ones).
DEBIAN_PACKAGES = {
    "egl": ("libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libgbm1"),
    "osmesa": ("libosmesa6",),
}
# PyOpenGL releases before this one fail on Python >= 3.12 (the fix, mcfletch/pyopengl#100, is in 3.1.8, whose
# first PyPI release is 3.1.9; see docs/rendering.md).
_PYOPENGL_MIN_PY312 = (3, 1, 9)

_PROBE = """
import numpy as np
if not hasattr(np, "infty"):
    np.infty = np.inf
import pyrender, trimesh
r = pyrender.OffscreenRenderer(8, 8)
s = pyrender.Scene()
s.add(pyrender.Mesh.from_trimesh(trimesh.creation.box()))
s.add(pyrender.PerspectiveCamera(yfov=1.0), pose=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]])
color, depth = r.render(s)
assert depth.max() > 0
r.delete()
"""

_lock = threading.Lock()
_context_pid: int | None = None  # pid of the process that created a GL context (None: never)
_forked_from_context = False


class GLBackendError(ScarceError):
    """No headless OpenGL backend works; the message lists what to install."""


def _pyopengl_version() -> tuple[int, ...]:
    try:
        text = importlib.metadata.version("PyOpenGL")
    except importlib.metadata.PackageNotFoundError:
        return (0,)
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def _check_python_pyopengl() -> None:
    if sys.version_info >= (3, 12) and _pyopengl_version() < _PYOPENGL_MIN_PY312:
        have = ".".join(map(str, _pyopengl_version()))
        raise GLBackendError(
            f"PyOpenGL {have} (pyrender 0.1.45 pins 3.1.0) does not work on Python "
            f"{sys.version_info.major}.{sys.version_info.minor}. Override the pin after installing scarce: "
            "`pip install --no-deps 'PyOpenGL>=3.1.9'` (pip warns about pyrender's pin; rendering works, see "
            "docs/rendering.md), or install `pyrender-maintained` instead of pyrender, or use Python 3.10 / 3.11."
        )


def _probe(platform: str, timeout: float = 60.0) -> str | None:
    """Render one frame with ``platform`` in a fresh interpreter; return None if it works, else the error."""
    env = dict(os.environ, PYOPENGL_PLATFORM=platform)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def select_backend() -> str:
    """Return the OpenGL platform to use, probing EGL then OSMesa when ``PYOPENGL_PLATFORM`` is unset.

    Raises:
        GLBackendError: neither backend can render; the message names the Debian packages to install.
    """
    chosen = os.environ.get("PYOPENGL_PLATFORM")
    if chosen:
        return chosen
    errors = {}
    for platform in BACKENDS:
        err = _probe(platform)
        if err is None:
            os.environ["PYOPENGL_PLATFORM"] = platform
            return platform
        errors[platform] = err
    detail = "; ".join(f"{p}: {e}" for p, e in errors.items())
    if "OSMesaCreateContextAttribs" in errors.get("osmesa", ""):
        detail += (" -- pyrender's OSMesa platform needs PyOpenGL >= 3.1.5 and pyrender 0.1.45 pins 3.1.0: "
                   "`pip install --no-deps 'PyOpenGL>=3.1.5'` (tested with 3.1.10)")
    pkgs = " ".join(DEBIAN_PACKAGES["egl"] + DEBIAN_PACKAGES["osmesa"])
    raise GLBackendError(
        f"no headless OpenGL backend works ({detail}). Install one: "
        f"`sudo apt-get install -y --no-install-recommends {pkgs}` (EGL with Mesa llvmpipe is enough on CPU; "
        "NVIDIA drivers bring their own EGL), or run `make gl-deps`; then retry, or force one with "
        "PYOPENGL_PLATFORM=egl|osmesa."
    )


def import_pyrender():
    """Import and return pyrender with a working backend and the numpy 2 / PyOpenGL workarounds applied."""
    with _lock:
        _check_python_pyopengl()
        import numpy as np

        if not hasattr(np, "infty"):
            # pyrender 0.1.45 still spells it np.infty; numpy 2 removed the alias.
            np.infty = np.inf
        # OffscreenRenderer reads PYOPENGL_PLATFORM when it is created, so this works even when OpenGL or
        # pyrender were imported first: pyrender's EGL / OSMesa platforms install their PyOpenGL plugin.
        select_backend()
        import pyrender

        return pyrender


def mark_context_created() -> None:
    """Record that this process now holds a GL context (forked children must not render)."""
    global _context_pid
    _context_pid = os.getpid()


def context_created_before_fork() -> bool:
    """True in a process forked from one that had created a GL context: rendering here would hang."""
    return _forked_from_context


def _after_fork_in_child() -> None:
    global _forked_from_context, _context_pid
    if _context_pid is not None:
        _forked_from_context = True
    _context_pid = None


os.register_at_fork(after_in_child=_after_fork_in_child)
