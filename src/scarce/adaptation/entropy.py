r"""Entropy of segmentation predictions for ADVENT (Vu et al., CVPR 2019, https://arxiv.org/abs/1811.12833).

With :math:`P_x^{(h,w,c)}` the softmax of the logits over :math:`C` classes, ADVENT defines the weighted
self-information map and the normalised entropy map

.. math::

    I_x^{(h,w,c)} = -P_x^{(h,w,c)} \log P_x^{(h,w,c)}, \qquad
    E_x^{(h,w)} = \frac{-1}{\log C} \sum_{c=1}^{C} P_x^{(h,w,c)} \log P_x^{(h,w,c)} \in [0, 1].

**MinEnt** minimises the mean of :math:`E_x` over the target pixels (:func:`entropy_loss`); **AdvEnt** feeds
:math:`I_x` to a discriminator that tells source from target maps (:func:`self_information`).

The authors' code (``prob_2_entropy`` and ``entropy_loss`` in github.com/valeoai/ADVENT) computes both with
``log2`` and divides both by :math:`\log_2 C`; the ratio does not depend on the base of the logarithm, so
:math:`E_x` and the MinEnt loss here equal theirs, and ``self_information(..., normalized=True)`` (the default)
equals their discriminator input. ``normalized=False`` gives the paper's :math:`I_x` in nats. Where the authors
take ``log(P + 1e-30)`` of a softmax, these take ``log_softmax`` of the logits in float32 (float64 for float64
logits): exact, and finite
for logits of any size (a class with probability that underflows to 0 contributes 0, as
:math:`\lim_{p \to 0} p \log p = 0`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["entropy_loss", "entropy_map", "self_information"]


def self_information(logits: torch.Tensor, *, normalized: bool = True) -> torch.Tensor:
    r"""ADVENT's weighted self-information map :math:`-P \log P`, per class (the AdvEnt discriminator's input).

    Args:
        logits: unnormalised class scores, classes along dimension 1.
        normalized: divide by :math:`\log C`, as the authors' ``prob_2_entropy`` does, so that the map sums over
            classes to the normalised entropy in ``[0, 1]`` (:func:`entropy_map`); ``False`` gives the
            paper's :math:`I_x = -P \log P` in nats, each entry in :math:`[0, 1/e]`.

    Returns:
        :math:`-P \log P \,/ \log C` (or :math:`-P \log P`), computed in float32 (float64 for float64 logits),
        in the dtype of ``logits``.

    Shape:
        - logits: :math:`(B, C, H, W)` (or :math:`(B, C)`, or any :math:`(B, C, *)`), :math:`C \geq 2`.
        - Output: same as ``logits``.
    """
    terms = _neg_p_log_p(logits)
    if normalized:
        terms = terms / math.log(logits.shape[1])
    return terms.to(logits.dtype)


def entropy_map(logits: torch.Tensor) -> torch.Tensor:
    r"""The normalised entropy :math:`E = -\frac{1}{\log C} \sum_c P \log P` of each pixel, in ``[0, 1]``.

    0 for a one-hot prediction, 1 for a uniform one.

    Args:
        logits: unnormalised class scores, classes along dimension 1.

    Returns:
        The entropy map, computed in float32 (float64 for float64 logits), in the dtype of ``logits``.

    Shape:
        - logits: :math:`(B, C, H, W)` (any :math:`(B, C, *)`), :math:`C \geq 2`.
        - Output: :math:`(B, H, W)` (``logits`` without dimension 1).

    Examples::

        >>> entropy_map(torch.zeros(1, 4, 2, 2))  # uniform over 4 classes
        tensor([[[1., 1.],
                 [1., 1.]]])
    """
    return (_neg_p_log_p(logits).sum(dim=1) / math.log(logits.shape[1])).to(logits.dtype)


def entropy_loss(logits: torch.Tensor, ignore_mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""ADVENT's MinEnt loss: the mean normalised entropy over the (kept) pixels.

    .. math::

        \mathcal{L}_{ent} = \frac{1}{|\Omega|} \sum_{(h,w) \in \Omega} E^{(h,w)}

    With ``ignore_mask=None``, :math:`\Omega` is every pixel of the batch and this equals the authors'
    ``entropy_loss`` (:math:`-\sum P \log_2 P / (N H W \log_2 C)`). Pixels where ``ignore_mask`` is True (padding,
    for example) are left out of both the sum and the count; when every pixel is ignored the loss is 0 (still
    attached to the graph, so a backward pass works and gives zero gradients).

    Args:
        logits: unnormalised class scores of the target images, classes along dimension 1.
        ignore_mask: True where a pixel does not count.

    Returns:
        A float32 (float64 for float64 logits) scalar in ``[0, 1]``.

    Shape:
        - logits: :math:`(B, C, H, W)` (any :math:`(B, C, *)`), :math:`C \geq 2`.
        - ignore_mask: :math:`(B, H, W)`, boolean.
        - Output: :math:`()`.
    """
    entropy = _neg_p_log_p(logits).sum(dim=1) / math.log(logits.shape[1])
    if ignore_mask is None:
        return entropy.mean()
    if ignore_mask.shape != entropy.shape:
        raise ValueError(
            f"ignore_mask must have the shape of the logits without the class dimension, {tuple(entropy.shape)}, "
            f"but got {tuple(ignore_mask.shape)}."
        )
    keep = ~ignore_mask.to(torch.bool)
    return (entropy * keep).sum() / keep.sum().clamp(min=1)


def _neg_p_log_p(logits: torch.Tensor) -> torch.Tensor:
    """``-P log P`` per class in float32 (float64 for float64 logits), from ``log_softmax``; 0 where P is 0."""
    if logits.dim() < 2 or logits.shape[1] < 2:
        raise ValueError(
            f"Entropy needs logits with at least 2 classes along dimension 1, (B, C, H, W), "
            f"but got shape {tuple(logits.shape)}."
        )
    log_p = F.log_softmax(logits.double() if logits.dtype == torch.float64 else logits.float(), dim=1)
    # A logit of -inf (a masked class) gives log P = -inf and P = 0; clamping log P to the most negative finite
    # float makes P log P = 0 there instead of 0 * -inf = NaN, and the clamp passes no gradient to that class.
    log_p = log_p.clamp(min=torch.finfo(log_p.dtype).min)
    return -(log_p.exp() * log_p)
