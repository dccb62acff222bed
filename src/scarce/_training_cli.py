"""The LightningCLI behind ``scarce fit|validate|test|predict`` (imported only by those commands: it loads Lightning).

Two things on top of Lightning's:

- scarce's LightningModules, DataModules and callbacks are imported before the parser is built, so jsonargparse
  knows them as subclasses: ``--model.help DANN``, ``--model DANN`` and ``--data BlobsDataModule`` take short names,
  and ``scarce fit --help`` lists them under "known subclasses".
- LightningCLI's top-level ``--optimizer`` / ``--lr_scheduler`` replace a model's ``configure_optimizers`` and
  with it the model's own schedule (with a warning). scarce's modules take both as ``__init__`` arguments
  (:mod:`scarce.optim`), so here a top-level ``--optimizer X`` becomes the model's ``optimizer`` (its
  ``lr_scheduler`` stays) and ``--lr_scheduler Y`` its ``lr_scheduler``: each replaces exactly what it names, and
  the saved ``config.yaml`` holds the result under ``model``, so it re-runs as it ran.
"""

from __future__ import annotations

import importlib
import pkgutil

from lightning.pytorch.cli import LightningCLI

from scarce._errors import ScarceError

__all__ = ["ScarceLightningCLI", "import_scarce_classes"]

_CLASS_PACKAGES = ("scarce.lightning_modules", "scarce.datamodules", "scarce.callbacks", "scarce.nets")
_INJECTED = ("optimizer", "lr_scheduler")


def import_scarce_classes() -> None:
    """Import every module of the packages whose classes a config names, so jsonargparse resolves short names."""
    for package_name in _CLASS_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{package_name}."):
            try:
                importlib.import_module(info.name)
            except (ImportError, OSError):  # an optional part that cannot load here: a config naming it says so
                continue


class ScarceLightningCLI(LightningCLI):
    """LightningCLI that hands the top-level ``--optimizer`` / ``--lr_scheduler`` to models that take them."""

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        model = config.get("model")
        init_args = model.get("init_args") if model is not None and "class_path" in model else model
        for key in _INJECTED:
            given = config.get(key)
            if given is None:
                continue
            if init_args is not None and key in init_args:
                init_args[key] = given
                config[key] = None  # Lightning's configure_optimizers override then has nothing to do
            elif str(model.get("class_path", "")).startswith("scarce."):
                raise ScarceError(f"--{key}: {model.class_path} takes no {key} argument (it configures its "
                                  f"optimizers itself: `scarce {self.subcommand} --model.help {model.class_path}` "
                                  "lists its options)")
