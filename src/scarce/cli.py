"""The ``scarce`` command.

``scarce fit|validate|test|predict`` run LightningCLI on the YAML configs shipped in the package (``--config
dann_blobs`` names one, ``scarce configs`` lists them; a file path works as well); the other commands are small
programs, each in the module named in :data:`COMMANDS` and imported only when used, so ``scarce --help`` stays fast
and a broken optional part cannot break training.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence

from scarce._allocator import keep_freed_memory
from scarce._errors import ScarceError
from scarce.packaged_configs import resolve_config_arg

__all__ = ["COMMANDS", "BENCHMARKS", "main", "lightning_cli", "load_target", "dispatch", "version"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")

# name -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("scarce.demo:main", "the main job: source-only vs DANN on MNIST -> MNIST-M, table + figures"),
    "configs": ("scarce.packaged_configs:main", "the packaged experiment configs: list, show, copy to edit"),
    "data": ("scarce.data.cli:main", "TFRecord tools: convert, inspect, dump, index, stats"),
    "render": ("scarce.render.cli:main", "render a synthetic dataset from 3D models into TFRecord shards"),
    "bench": ("scarce.cli:bench_main", "benchmarks: pipeline, render, generative"),
}

BENCHMARKS: dict[str, tuple[str, str]] = {
    "pipeline": ("scarce.bench.pipeline:main", "input pipeline throughput per stage (book 7.1)"),
    "render": ("scarce.bench.render:main", "rendering frames per second, all outputs"),
    "generative": ("scarce.bench.generative:main", "FID / KID / IS of a trained VAE or GAN"),
    "gpu": ("scarce.bench.gpu:main", "GPU acceptance run (make gpu-check): tests, pipeline, render, FCN-8s, MFU"),
}


def version() -> str:
    """The installed distribution's version (its metadata), or the source tree's when run uninstalled."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("scarce")
    except PackageNotFoundError:
        from scarce import __version__

        return __version__


def _usage() -> str:
    lines = [
        "usage: scarce [--version] [--debug] COMMAND [ARGS...]",
        "",
        "Training (LightningCLI; `scarce fit --help` lists every option, `scarce fit --model.help DANN` a model's):",
        "  fit|validate|test|predict --config NAME|FILE [--config trainer/gpu] [--key value ...]",
        "  NAME is a packaged config (`scarce configs` lists them), FILE any YAML file",
        "  (resume a stopped fit: the same command with --ckpt_path last; --debug or SCARCE_DEBUG=1 shows the",
        "  traceback of an error instead of its one line)",
        "",
        "Command groups:",
    ]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Benchmarks (scarce bench NAME --help):"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in BENCHMARKS.items()]
    return "\n".join(lines)


def load_target(target: str):
    """Import ``"module:function"`` and return the function."""
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _call(target: str, argv: list[str]) -> int:
    return int(load_target(target)(argv) or 0)


def dispatch(argv: list[str], table: dict[str, tuple[str, str]], prog: str) -> int:
    """Run ``argv[0]`` from a ``{name: ("module:function", help)}`` table, or print the table for ``-h``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} NAME [ARGS...]\n")
        for name, (_, text) in table.items():
            print(f"  {name:<11} {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in table:
        raise ScarceError(f"unknown {prog} command {name!r}; valid values are {sorted(table)}")
    return _call(table[name][0], rest)


def lightning_cli(argv: Sequence[str], run: bool = True, exit_on_error: bool = True):
    """Build the LightningCLI for ``argv`` (``["fit", "--config", ...]``).

    Model and data module are chosen in the config by ``class_path`` (any LightningModule /
    LightningDataModule, scarce's or the user's). ``overwrite=True`` lets a second ``fit`` in the same run
    folder replace ``config.yaml`` instead of aborting. ``exit_on_error=False`` raises jsonargparse's
    ``ArgumentError`` for a bad command line instead of printing the usage and exiting 2. A ``--config`` value that
    is no file names a packaged config (:func:`scarce.packaged_configs.resolve_config_arg`).
    """
    from lightning.pytorch import LightningDataModule, LightningModule

    from scarce._training_cli import ScarceLightningCLI, import_scarce_classes

    import_scarce_classes()
    argv = _resolve_config_args(list(argv))
    # LightningCLI warns whenever ``args`` is given while sys.argv has arguments too, which is always the case
    # for the ``scarce`` entry point (it hands LightningCLI its own argv). sys.argv itself must stay: DDP
    # relaunches the other ranks from it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within")
        return ScarceLightningCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=1234,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": exit_on_error},
            args=argv,
            run=run,
        )


def _resolve_config_args(argv: list[str]) -> list[str]:
    """Each ``--config`` / ``-c`` value as a file: given as one, or the packaged config of that name."""
    resolved, values_of = [], {"--config", "-c"}
    for i, arg in enumerate(argv):
        if i > 0 and argv[i - 1] in values_of:
            resolved.append(resolve_config_arg(arg))
        elif arg.startswith("--config="):
            resolved.append("--config=" + resolve_config_arg(arg.removeprefix("--config=")))
        else:
            resolved.append(arg)
    return resolved


DEBUG_ENV = "SCARCE_DEBUG"
"""Set to 1 to get the full traceback of a user error instead of its one line."""

SIGTERM_EXIT = 128 + 15
"""Exit status of a fit stopped by SIGTERM after saving ``last.ckpt``: what the shell reports for a process killed
by SIGTERM, so schedulers and scripts see an interrupted run, not a finished one (Lightning itself exits 0)."""


def _one_line(message: str) -> str:
    """jsonargparse's nested report of a refused value, as ``--data.batch_size: -3 does not conform to ...``.

    The report nests one block per level (``Parser key "model"`` > ``"optimizer"`` > ``"lr"``), each listing why
    every member of a union refused the value; the innermost block says what was wrong."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    where = f"--{'.'.join(keys)}: " if keys else ""
    missing = re.search(r"(No module named '[^']+'|module '[^']+' has no attribute '[^']+')", message)
    if missing:
        return f"{where}cannot import it: {missing[1]}"
    innermost = message.rsplit('Parser key "', 1)[-1] if keys else message
    lines = [line.strip().removeprefix("- ") for line in innermost.splitlines()[1 if keys else 0:] if line.strip()]
    detail = next((line for line in lines if "is not accepted" in line or "does not conform" in line), None)
    if detail is None:
        expected = ["null" if t == "NoneType" else t for t in re.findall(r"Expected a <class '([\w.]+)'>", innermost)]
        expected += [t for t in re.findall(r"Expected a (typing\.Literal\[[^\]]*\])", innermost)]
        given = re.search(r"Given value: (.+)", innermost)
        if expected and given:
            value = given[1].split(". Got value:")[0].strip()
            value = re.sub(r"^NestedArg\(key='[^']*', val='(.*)'\)$", r"\1", value)
            expected = [re.sub(r"^typing\.Literal\[(.*)\]$", r"one of \1", t) for t in expected]
            detail = f"got {value!r}, expected {' or '.join(expected)}"
    if detail is None:
        detail = lines[0] if lines else message.strip().splitlines()[0]
    detail = re.sub(r"<class '([\w.]+)'>", r"\1", detail)
    return f"{where}{detail}"


def _run_lightning(command: str, argv: list[str]) -> int:
    """Run LightningCLI; user errors become one line on stderr and exit status 1 (``--debug``, ``SCARCE_DEBUG=1``:
    the traceback). User errors: a refused option or config (jsonargparse), a ScarceError (from scarce's classes,
    also when jsonargparse wraps one), Lightning's MisconfigurationException, a missing file (``--ckpt_path``), a
    checkpoint ``torch.load(weights_only=True)`` refuses."""
    import pickle
    from argparse import ArgumentError

    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    keep_freed_memory()  # before anything is allocated; DataLoader workers inherit it through fork
    try:
        lightning_cli(argv, exit_on_error=False)
    except ArgumentError as err:  # a value the options' types refuse, an unknown option: before anything is built
        if _debugging():
            raise
        print(f"scarce {command}: error: {_one_line(str(err))} (`scarce {command} --help` lists the options)",
              file=sys.stderr)
        return 1
    except SIGTERMException:
        # Lightning stops at the end of the current batch; scarce.callbacks.resume.ResumeCheckpoint has saved
        # last.ckpt in that batch's on_train_batch_end (docs/reliability.md, "Resuming training").
        print(f"scarce {command}: stopped by SIGTERM; resume with `--ckpt_path last`", file=sys.stderr)
        return SIGTERM_EXIT
    except (ScarceError, pickle.UnpicklingError, MisconfigurationException, FileNotFoundError) as err:
        if _debugging():
            raise
        if isinstance(err, pickle.UnpicklingError):
            message = f"a checkpoint was refused by torch.load(weights_only=True): {str(err).splitlines()[0]}"
        else:
            message = str(err) if isinstance(err, ScarceError) else f"{type(err).__name__}: {err}"
        print(f"scarce {command}: error: {message}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as err:  # jsonargparse wraps what a model's or DataModule's __init__ raised
        cause = _user_error_within(err)
        if cause is None or _debugging():
            raise
        print(f"scarce {command}: error: {cause}", file=sys.stderr)
        return 1
    return 0


def _user_error_within(err: BaseException) -> ScarceError | None:
    """The :class:`ScarceError` an exception was raised from or while handling, if any (jsonargparse reports a
    class that failed to instantiate as a ValueError listing every type it tried; the user's error is inside)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, ScarceError):
            return current
        seen.add(id(current))
        pending += [current.__cause__, current.__context__]
    return None


def bench_main(argv: list[str]) -> int:
    return dispatch(argv, BENCHMARKS, "scarce bench")


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # anywhere on the line; the environment carries it to DDP's other ranks too
        argv = [arg for arg in argv if arg != "--debug"]
        os.environ[DEBUG_ENV] = "1"
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        sys.exit(0)
    if argv[0] in ("--version", "-V"):
        print(f"scarce {version()}")
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_SUBCOMMANDS:
        if code := _run_lightning(command, argv):
            sys.exit(code)
        return  # in-process callers (tests, notebooks) get control back after a successful run
    if command not in COMMANDS:
        print(f"scarce: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    try:
        code = _call(COMMANDS[command][0], rest)
    except ScarceError as err:
        if _debugging():
            raise
        print(f"scarce {command}: error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
