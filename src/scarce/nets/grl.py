"""Gradient reversal (Ganin & Lempitsky, ICML 2015): identity forward, gradient times ``-lambda`` backward."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GradientReversalFunction", "GradientReversal", "grad_reverse"]


class GradientReversalFunction(torch.autograd.Function):
    r"""Identity in the forward pass; multiplies the incoming gradient by :math:`-\lambda` in the backward pass.

    Placed between a feature extractor and a domain classifier, it makes one backward pass train the
    classifier to separate the domains while pushing the features to confuse it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        # view_as: a new tensor node, so autograd routes the gradient through backward() below.
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # The gradient keeps the dtype it arrives in (float32 master weights under autocast stay float32).
        return grad_output.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Functional form of :class:`GradientReversalFunction`."""
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    r"""Module form; ``coeff`` (:math:`\lambda`) can be changed between steps, e.g. by a schedule.

    Shape:
        any; output has the shape of the input.

    Examples::

        >>> grl = GradientReversal(coeff=0.5)
        >>> x = torch.ones(2, requires_grad=True)
        >>> grl(x).sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000])
    """

    def __init__(self, coeff: float = 1.0) -> None:
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}"
