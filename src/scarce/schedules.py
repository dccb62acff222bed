r"""Schedules of the DANN paper (Ganin et al., JMLR 2016, section 5.2.2), functions of training progress.

With :math:`p \in [0, 1]` the fraction of training done:

.. math::

    \lambda_p = \frac{2}{1 + \exp(-\gamma p)} - 1, \qquad \gamma = 10

    \mu_p = \frac{\mu_0}{(1 + \alpha p)^{\beta}}, \qquad \alpha = 10,\ \beta = 0.75

:math:`\lambda_p` ramps the adversarial gradient from 0 to 1 so the domain classifier's early noise does not
wreck the features; :math:`\mu_p` anneals the learning rate.

The learning-rate schedules are also ``torch.optim`` schedulers for the LightningModules' ``lr_scheduler`` option
(:class:`DANNAnnealing`, :class:`PolyDecay`): functions of progress, so they take ``total_steps``, which scarce's
LightningModules fill in from ``trainer.estimated_stepping_batches``, and step every batch.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["DANNAnnealing", "PolyDecay", "ProgressLR", "adversarial_coeff", "dann_lambda", "dann_lr_factor",
           "progress"]


def progress(step: int, total_steps: int) -> float:
    """Fraction of training done, clipped to [0, 1]."""
    return min(max(step / max(total_steps, 1), 0.0), 1.0)


def dann_lambda(p: float, gamma: float = 10.0) -> float:
    """Adversarial weight :math:`2 / (1 + e^{-\\gamma p}) - 1`: 0 at the start, about 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def dann_lr_factor(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Learning-rate multiplier :math:`1 / (1 + \\alpha p)^\\beta` (1 at the start, about 0.17 at the end)."""
    return 1.0 / (1.0 + alpha * p) ** beta


def adversarial_coeff(step: int, total_steps: int, weight: float, schedule: str = "dann", gamma: float = 10.0) -> float:
    """The gradient-reversal coefficient: ``weight`` times the DANN ramp (``schedule="dann"``) or ``weight``."""
    if schedule == "constant":
        return weight
    return weight * dann_lambda(progress(step, total_steps), gamma)


class ProgressLR(LambdaLR):
    """A learning-rate factor as a function of training progress ``p = step / total_steps``, stepped every batch.

    Args:
        optimizer: The optimizer whose learning rates are scaled.
        total_steps: Training steps of the whole run; scarce's LightningModules pass
            ``trainer.estimated_stepping_batches`` when the config leaves it ``null``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, last_epoch: int = -1) -> None:
        if total_steps is None or total_steps < 1:
            raise ValueError(f"{type(self).__name__}: total_steps must be a positive number of training steps, got "
                             f"{total_steps} (scarce's LightningModules fill it in from the trainer)")
        self.total_steps = int(total_steps)
        super().__init__(optimizer, self._factor_at, last_epoch)

    def _factor_at(self, step: int) -> float:
        return self.factor(progress(step, self.total_steps))

    def factor(self, p: float) -> float:
        """The learning-rate multiplier at progress ``p`` in [0, 1]."""
        raise NotImplementedError


class DANNAnnealing(ProgressLR):
    """The DANN paper's annealing ``lr / (1 + alpha p)^beta`` (:func:`dann_lr_factor`).

    Args:
        optimizer: The optimizer whose learning rates are scaled.
        total_steps: Training steps of the whole run (``null``: from the trainer).
        alpha: ``alpha`` of the annealing.
        beta: ``beta`` of the annealing.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, alpha: float = 10.0,
                 beta: float = 0.75, last_epoch: int = -1) -> None:
        self.alpha, self.beta = alpha, beta
        super().__init__(optimizer, total_steps, last_epoch)

    def factor(self, p: float) -> float:
        return dann_lr_factor(p, self.alpha, self.beta)


class PolyDecay(ProgressLR):
    """The FCN / DeepLab "poly" schedule ``lr * (1 - p)^power``, 0 at the end of training.

    Args:
        optimizer: The optimizer whose learning rates are scaled.
        total_steps: Training steps of the whole run (``null``: from the trainer).
        power: The exponent (0.9 in DeepLab).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, power: float = 0.9,
                 last_epoch: int = -1) -> None:
        self.power = power
        super().__init__(optimizer, total_steps, last_epoch)

    def factor(self, p: float) -> float:
        return (1.0 - p) ** self.power
