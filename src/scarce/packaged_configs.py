"""The experiment configs shipped inside the package, and ``scarce configs`` to list and copy them.

The YAML files live in ``scarce/configs/`` (the repository's ``configs/`` is a symlink to that folder), so an
installed scarce has them too: ``scarce fit --config dann_blobs`` finds ``configs/dann_blobs.yaml`` of the package,
``--config trainer/gpu`` the trainer overlay, ``scarce render --config render/randomized`` a render preset::

    scarce/configs/
      dann_blobs.yaml, dann_mnist_mnistm.yaml, fcn8s_rendered.yaml, ...   experiments (LightningCLI)
      trainer/cpu.yaml, gpu.yaml, ddp.yaml, bf16.yaml                       trainer overlays
      render/synthetic_flat.yaml, randomized.yaml, ...                      render presets spelled out

A name is the file's path below that folder without ``.yaml``; ``configs/dann_blobs.yaml`` (the repository path)
and ``dann_blobs.yaml`` name the same file, so commands written for a checkout work from any folder.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
from pathlib import Path

from scarce._errors import ScarceError

__all__ = ["CONFIG_ROOT", "config_names", "config_path", "resolve_config_arg", "main"]

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
"""The folder of packaged configs (setuptools installs the package as plain files, never zipped)."""

_SUFFIXES = (".yaml", ".yml")


def config_names() -> list[str]:
    """Every packaged config by name: ``["advent_fcn8s_rendered", ..., "render/randomized", "trainer/gpu", ...]``."""
    return sorted(p.relative_to(CONFIG_ROOT).with_suffix("").as_posix()
                  for p in CONFIG_ROOT.rglob("*") if p.suffix in _SUFFIXES and p.is_file())


def _name_of(value: str) -> str:
    """``configs/trainer/gpu.yaml`` / ``trainer/gpu.yaml`` / ``trainer/gpu`` -> ``trainer/gpu``."""
    name = value.replace("\\", "/").removeprefix("./").removeprefix("configs/")
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def config_path(name: str) -> Path:
    """The packaged file of a config name (see the module docstring), or a ScarceError listing close names."""
    name = _name_of(name)
    names = config_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ScarceError(f"no packaged config {name!r}{hint} (`scarce configs` lists them)")
    return next(CONFIG_ROOT / f"{name}{suffix}" for suffix in _SUFFIXES if (CONFIG_ROOT / f"{name}{suffix}").is_file())


def _looks_like_inline_yaml(value: str) -> bool:
    return any(c in value for c in "{}:\n") and Path(value).suffix not in _SUFFIXES


def resolve_config_arg(value: str) -> str:
    """What a ``--config`` value means: an existing file as given, else the packaged config of that name.

    An inline YAML string (LightningCLI accepts ``--config '{trainer: {max_epochs: 1}}'``) passes unchanged; any
    other value that is neither a file nor a packaged name is a ScarceError naming both.
    """
    if Path(value).is_file() or _looks_like_inline_yaml(value):
        return value
    try:
        return str(config_path(value))
    except ScarceError as err:
        raise ScarceError(f"--config {value}: not a file, and {err}") from None


def _summary(path: Path) -> str:
    """The first comment line of a config: what it trains."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def _copy(pairs: list[tuple[Path, Path]], force: bool) -> None:
    """Copy every (source, destination), refusing before the first write if any destination exists."""
    existing = [str(dest) for _, dest in pairs if dest.exists()]
    if existing and not force:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise ScarceError(f"{shown} already exist(s); pass --force to replace")
    for source, dest in pairs:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(dest)  # whole or not at all
        print(f"{dest}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scarce configs", description="The experiment configs shipped with scarce: list, show or copy them.",
        epilog="Any `scarce fit|validate|test|predict --config NAME` takes a packaged name as well as a file.")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", help="name and first comment line of every packaged config (the default)")
    show = sub.add_parser("show", help="print a config")
    show.add_argument("name")
    path = sub.add_parser("path", help="print the file path of a config")
    path.add_argument("name")
    copy = sub.add_parser("copy", help="copy a config (NAME DEST) or every config (--all DIR) to edit it",
                          description="`scarce configs copy dann_blobs ./my.yaml`, `scarce configs copy dann_blobs "
                                      "runs/` (into a folder), `scarce configs copy --all ./configs`.")
    copy.add_argument("name", nargs="?", help="config name (see `scarce configs list`)")
    copy.add_argument("dest", nargs="?", help="file or existing folder; with --all, the folder to fill")
    copy.add_argument("--all", action="store_true", help="copy every config, keeping trainer/ and render/")
    copy.add_argument("--force", action="store_true", help="replace files that already exist")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action in (None, "list"):
        names = config_names()
        width = max(len(n) for n in names)
        for name in names:
            print(f"{name:<{width}}  {_summary(config_path(name))}")
        print(f"\n{len(names)} configs in {CONFIG_ROOT}; `scarce configs copy NAME DEST` copies one to edit")
        return 0
    if args.action == "path":
        print(config_path(args.name))
        return 0
    if args.action == "show":
        sys.stdout.write(config_path(args.name).read_text())
        return 0
    if args.all:
        dest = Path(args.dest or args.name or ".")  # `copy --all DIR`: the one positional is the folder
        if args.name and args.dest:
            raise ScarceError("copy --all takes one folder, not a config name")
        _copy([(config_path(n), dest / config_path(n).relative_to(CONFIG_ROOT)) for n in config_names()], args.force)
        return 0
    if not args.name or not args.dest:
        raise ScarceError("copy needs a config name and a destination: `scarce configs copy dann_blobs ./my.yaml` "
                          "(or `--all DIR`)")
    source = config_path(args.name)
    dest = Path(args.dest)
    if dest.is_dir() or args.dest.endswith(("/", "\\")):
        dest = dest / source.name
    _copy([(source, dest)], args.force)
    return 0
