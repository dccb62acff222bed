"""Optimizers and learning-rate schedulers injected into the LightningModules, the way LightningCLI expects.

A module takes ``optimizer: OptimizerCallable`` and ``lr_scheduler: LRSchedulerCallable | None`` (Lightning's
types: a callable of the parameters, and of the optimizer). In a config they are ``class_path`` + ``init_args``::

    model:
      init_args:
        optimizer:
          class_path: torch.optim.SGD
          init_args: {lr: 0.01, momentum: 0.9}
        lr_scheduler:
          class_path: scarce.schedules.DANNAnnealing

and on the command line ``--model.optimizer AdamW``, ``--model.optimizer.lr 0.001``, ``--model.lr_scheduler null``.
The defaults are such specs (plain dicts: they print with ``--print_config`` and save in ``config.yaml``);
:func:`as_factory` turns them, or any callable a Python caller passes, into the callable the module calls.

A scheduler whose class takes ``total_steps`` (scarce's :class:`~scarce.schedules.ProgressLR` schedules,
``torch.optim.lr_scheduler.OneCycleLR``) gets the trainer's ``estimated_stepping_batches`` when the config leaves it
``null``, and steps every batch; any other scheduler steps every epoch (Lightning's default).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from scarce._errors import ScarceError

__all__ = ["as_factory", "configure_optimizer", "factory_spec", "keep_specs", "spec"]

Spec = dict[str, Any]


def spec(class_path: str, **init_args: Any) -> Spec:
    """A ``{"class_path": ..., "init_args": ...}`` default for an injected optimizer or scheduler."""
    return {"class_path": class_path, "init_args": init_args}


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ScarceError(f"cannot import {class_path!r}: give a dot import path such as torch.optim.AdamW") from None


def as_factory(value: Callable | Spec) -> Callable:
    """The callable behind an injected option: ``partial(cls, **init_args)`` for a spec or a factory that builds a
    class (jsonargparse's reach its whole CLI through their instantiator, which a module must not hold: SWA deep-copies
    the module), any other callable as it is."""
    if callable(value):
        target, kwargs, extra = _unwrap(value)
        if isinstance(value, functools.partial) and inspect.isclass(target) and not extra:
            return functools.partial(target, **kwargs)
        return value
    if isinstance(value, dict) and "class_path" in value:
        return functools.partial(_import(value["class_path"]), **(value.get("init_args") or {}))
    raise ScarceError(f"expected a callable or a {{class_path, init_args}} mapping, got {value!r}")


def _unwrap(factory: Callable) -> tuple[Any, dict[str, Any], tuple]:
    """The class (or function) a factory builds, the keyword arguments it holds, and positional ones after the class.
    jsonargparse's factories are ``partial(call, instantiator, cls, **init_args)``; a Python caller's ``partial(cls,
    ...)`` or ``cls``."""
    kwargs: dict[str, Any] = {}
    target, extra = factory, ()
    while isinstance(target, functools.partial):
        kwargs = {**target.keywords, **kwargs}
        classes = [i for i, a in enumerate(target.args) if inspect.isclass(a)]
        if classes:
            extra = target.args[classes[0] + 1:] + extra
            target = target.args[classes[0]]
        else:
            extra = target.args + extra
            target = target.func
    return target, kwargs, extra


def factory_spec(value: Callable | Spec) -> Spec | str:
    """What the hyperparameters keep of an injected option: a spec (rebuilds it from a checkpoint's hparams, loads
    with ``weights_only=True``), or, for a callable no import path names (a lambda), its repr."""
    if isinstance(value, dict):
        return value
    target, kwargs, extra = _unwrap(value)
    qualname = getattr(target, "__qualname__", "")
    if extra or not qualname or "<" in qualname:  # positional arguments have no name; a lambda has no import path
        return repr(value)
    return spec(f"{target.__module__}.{qualname}", **kwargs)


def _signature_names(target: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return ()


def keep_specs(hparams: dict[str, Any], *names: str) -> None:
    """Replace the callables among ``hparams[name]`` by :func:`factory_spec`: a module built in Python with
    ``optimizer=partial(torch.optim.AdamW, lr=1e-3)`` keeps ``{class_path, init_args}``, which checkpoints store as
    plain data (LightningCLI already hands the module its config's specs)."""
    for name in names:
        if callable(hparams.get(name)):
            hparams[name] = factory_spec(hparams[name])


def configure_optimizer(parameters: Iterable[torch.nn.Parameter], optimizer: Callable | Spec,
                        lr_scheduler: Callable | Spec | None, total_steps: Callable[[], int]) -> Any:
    """What ``configure_optimizers`` returns: the optimizer, with its scheduler when there is one.

    ``total_steps`` is called only for a scheduler that takes ``total_steps`` and was not given it (it reads
    ``trainer.estimated_stepping_batches``, which may load the training data)."""
    opt = as_factory(optimizer)(parameters)
    if lr_scheduler is None:
        return opt
    factory = as_factory(lr_scheduler)
    target, given, _ = _unwrap(factory)
    per_step = "total_steps" in _signature_names(target)
    if per_step and given.get("total_steps") is None:
        scheduler = factory(opt, total_steps=max(1, int(total_steps())))
    else:
        scheduler = factory(opt)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "step" if per_step else "epoch"}
    if getattr(scheduler, "monitor", None):  # lightning.pytorch.cli.ReduceLROnPlateau names its metric
        config["monitor"] = scheduler.monitor
    return {"optimizer": opt, "lr_scheduler": config}
