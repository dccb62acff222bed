r"""Schedules of the DANN paper (Ganin et al., JMLR 2016, section 5.2.2), functions of training progress.

With :math:`p \in [0, 1]` the fraction of training done:

.. math::

    \lambda_p = \frac{2}{1 + \exp(-\gamma p)} - 1, \qquad \gamma = 10

    \mu_p = \frac{\mu_0}{(1 + \alpha p)^{\beta}}, \qquad \alpha = 10,\ \beta = 0.75

:math:`\lambda_p` ramps the adversarial gradient from 0 to 1 so the domain classifier's early noise does not
wreck the features; :math:`\mu_p` anneals the learning rate.
"""

from __future__ import annotations

import math

__all__ = ["adversarial_coeff", "dann_lambda", "dann_lr_factor", "progress"]


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
