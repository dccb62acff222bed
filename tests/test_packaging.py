"""scarce as a library people install: the wheel holds what the commands need, and every import is declared.

The wheel test builds the wheel from a copy of the source tree, installs it with ``pip install --no-deps`` into a
fresh venv and runs the ``scarce`` that install put on disk from a folder outside the repository. Honest about
what that venv holds: to keep torch and the other dependencies (GBs) from being copied, the venv gets a ``.pth``
file that appends this interpreter's site-packages to its path. So the test proves what the wheel carries (modules,
configs, entry point, metadata) and that the installed scarce never reaches into the source tree; it does not
prove that pip resolves the declared dependency ranges (the import test below checks that every import is declared).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "scarce"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_normalise(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"scarce"}


def test_every_imported_package_is_a_declared_dependency():
    """Each third-party module scarce imports belongs to a distribution named in pyproject's dependencies."""
    distributions = packages_distributions()
    missing = {}
    for module in sorted(_imported_top_level_modules()):
        owners = {_normalise(d) for d in distributions.get(module, [])}
        # pyrender-maintained provides `pyrender` on Python >= 3.12; both are declared with markers.
        if not owners & _declared():
            missing[module] = sorted(owners) or ["(not installed)"]
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "tfrecord" not in _declared(), "tfrecord is a test reference only (the `test` extra)"


def _copy_source(dest: Path) -> Path:
    """The files a build reads, copied (a build in the repository would leave build/ and egg-info behind)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    python = sys.executable
    source = _copy_source(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYOPENGL_PLATFORM="egl", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")

    _run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(source)], cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("scarce-*.whl"))

    # A fresh venv without pip; the dependencies come from this interpreter's site-packages through a .pth file.
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    bin_dir = target / "bin"
    site = Path(_run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "-q", str(wheel)],
         cwd=tmp_path, env=env)

    elsewhere = tmp_path / "elsewhere"  # no configs/ folder, no source tree
    elsewhere.mkdir()
    scarce = str(bin_dir / "scarce")
    where = _run([str(bin_dir / "python"), "-c", "import scarce, scarce.packaged_configs as p; "
                  "print(scarce.__file__); print(p.CONFIG_ROOT)"], cwd=elsewhere, env=env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert _run([scarce, "--version"], cwd=elsewhere, env=env).stdout.strip() == "scarce 0.1.0"
    assert "--config-dir" in _run([scarce, "demo", "--help"], cwd=elsewhere, env=env).stdout
    listing = _run([scarce, "configs"], cwd=elsewhere, env=env).stdout
    assert all(name in listing for name in ("dann_blobs", "trainer/gpu", "render/randomized"))
    printed = _run([scarce, "fit", "--config", "dann_blobs", "--print_config"], cwd=elsewhere, env=env).stdout
    assert "class_path: scarce.lightning_modules.dann.DANN" in printed
    # The path the README gives, from a folder that has no configs/: the packaged config.
    _run([scarce, "fit", "--config", "configs/dann_blobs.yaml", "--config", "trainer/cpu", "--trainer.max_steps",
          "2", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false"], cwd=elsewhere, env=env)
    logged = (elsewhere / "runs/dann_blobs/csv/version_0/metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in logged and "lr-SGD" in logged
    assert (elsewhere / "runs/dann_blobs/checkpoints/last.ckpt").is_file()
