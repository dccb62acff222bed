r"""The domain-adversarial pass (DANN, Ganin et al. 2016), written once for classification and segmentation.

A network takes part through one callable, ``forward(x, num_labelled) -> (logits, domain_input)``: the task
logits of the first ``num_labelled`` rows of ``x`` (``None`` when ``num_labelled`` is 0) and the input of the
domain head for every row (features for classification, pool5 features or class probabilities for segmentation,
entropy maps for AdvEnt). Computing the logits of the labelled rows only matters for networks whose classifier has
batch norm: target rows must not move its statistics.

- :func:`adversarial_pass`: source and target through the network, the domain head behind gradient reversal
  (:func:`~scarce.nets.grl.grad_reverse`) with coefficient :math:`\lambda`; one joint batch or one pass per domain
  (``per_domain``: every batch-norm layer, domain head included, normalises each domain with its own statistics);
  ``reversed_domains="target"`` detaches the source's domain input, so only the target is pushed towards the
  source while the head still learns from both.
- :func:`probe_pass`: the source-only baseline's pass: target images go through the network in eval mode without
  gradient, and the head sees detached inputs, so it measures how separable the domains are without training
  the network.
- ``with_target_logits=True`` (both passes): ``logits`` holds the task logits of the target rows too, after the
  source's, with gradient, for losses on the unlabelled target (MinEnt's entropy); the probe then runs the target
  in training mode with gradient, its head still on detached inputs, so the only gradient the target gives the
  network is that loss's.
- :func:`domain_labels`: 0 for the source rows, 1 for the target rows, per image or per pixel.

Both passes return an :class:`AdversarialOutput` ``(logits, domain_logits, domain_labels)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import nn

from scarce.nets.grl import grad_reverse

__all__ = ["AdversarialForward", "AdversarialOutput", "adversarial_pass", "domain_labels", "probe_pass",
           "REVERSED_DOMAINS"]

AdversarialForward = Callable[[torch.Tensor, int], "tuple[torch.Tensor | None, torch.Tensor]"]
"""``forward(x, num_labelled) -> (task logits of x[:num_labelled] or None, domain-head input of every row)``."""

REVERSED_DOMAINS = ("both", "target")


class AdversarialOutput(NamedTuple):
    """One adversarial step's outputs, source rows first.

    Shape:
        - ``logits``: task logits of the source, ``(B_s, C)`` or ``(B_s, C, H, W)``; with ``with_target_logits``,
          of the source then the target, ``(B_s + B_t, ...)``.
        - ``domain_logits``: ``(B_s + B_t, 2)`` (per image) or ``(B_s + B_t, 2, h, w)`` (per pixel).
        - ``domain_labels``: int64 ``(B_s + B_t)`` or ``(B_s + B_t, h, w)``: 0 source, 1 target.
    """

    logits: torch.Tensor
    domain_logits: torch.Tensor
    domain_labels: torch.Tensor


def domain_labels(domain_logits: torch.Tensor, num_source: int) -> torch.Tensor:
    """Domain labels matching ``domain_logits`` ``(B, 2, ...)``: 0 for the first ``num_source`` rows, 1 after."""
    labels = torch.zeros(domain_logits.shape[:1] + domain_logits.shape[2:], dtype=torch.long,
                         device=domain_logits.device)
    labels[num_source:] = 1
    return labels


def adversarial_pass(forward: AdversarialForward, domain_head: nn.Module, x_s: torch.Tensor, x_t: torch.Tensor,
                     coeff: float, *, per_domain: bool = False,
                     reversed_domains: Literal["both", "target"] = "both",
                     with_target_logits: bool = False) -> AdversarialOutput:
    """Source logits and source + target domain logits of one adversarial step.

    Args:
        forward: the network's :data:`AdversarialForward`.
        domain_head: the domain classifier (2 logits per image or per pixel).
        x_s: source inputs ``(B_s, ...)``.
        x_t: target inputs ``(B_t, ...)``.
        coeff: :math:`\\lambda` of the gradient reversal.
        per_domain: one pass per domain through network and head (batch norm sees each domain alone); otherwise
            one concatenated batch (the same for networks without batch norm, and faster).
        reversed_domains: ``"both"`` (DANN: the reversed gradient reaches the network through source and target
            inputs) or ``"target"`` (only through the target's; the source's domain input is detached).
        with_target_logits: ``logits`` of the target rows too, after the source's.
    """
    if reversed_domains not in REVERSED_DOMAINS:
        raise ValueError(f"reversed_domains must be one of {REVERSED_DOMAINS}, got {reversed_domains!r}")
    n_s = x_s.shape[0]

    def reverse(domain_in: torch.Tensor, source: bool) -> torch.Tensor:
        return grad_reverse(domain_in.detach() if source and reversed_domains == "target" else domain_in, coeff)

    n_t = x_t.shape[0] if with_target_logits else 0
    if per_domain:
        logits, domain_s = forward(x_s, n_s)
        target_logits, domain_t = forward(x_t, n_t)
        if n_t:
            logits = torch.cat([logits, target_logits])
        domain_logits = torch.cat([domain_head(reverse(domain_s, True)), domain_head(reverse(domain_t, False))])
    else:
        logits, domain_in = forward(torch.cat([x_s, x_t]), n_s + n_t)
        if reversed_domains == "target":
            domain_in = torch.cat([domain_in[:n_s].detach(), domain_in[n_s:]])
        domain_logits = domain_head(grad_reverse(domain_in, coeff))
    return AdversarialOutput(logits, domain_logits, domain_labels(domain_logits, n_s))


def probe_pass(forward: AdversarialForward, network: nn.Module, domain_head: nn.Module, x_s: torch.Tensor,
               x_t: torch.Tensor, *, with_target_logits: bool = False) -> AdversarialOutput:
    """The source-only step: the network trains on the source alone, the domain head is a probe.

    The source goes through ``network`` as it is (training mode); the target goes through it in eval mode without
    gradient (batch-norm statistics stay source-only, dropout is off), and the head learns on detached inputs, so
    no domain gradient and no target statistic reaches the network. Every submodule's mode is restored after.

    ``with_target_logits=True``: the target goes through the network as the source does (training mode, with
    gradient, one joint batch, so batch norm sees both domains as it will in its running statistics) and
    ``logits`` holds its task logits after the source's, for a loss on them (MinEnt); the head still sees detached
    inputs, so it stays a probe.
    """
    n_s = x_s.shape[0]
    if with_target_logits:
        logits, domain_in = forward(torch.cat([x_s, x_t]), n_s + x_t.shape[0])
        domain_logits = domain_head(domain_in.detach())
        return AdversarialOutput(logits, domain_logits, domain_labels(domain_logits, n_s))
    logits, domain_s = forward(x_s, n_s)
    modes = [(m, m.training) for m in network.modules()]
    try:
        network.eval()
        with torch.no_grad():
            _, domain_t = forward(x_t, 0)
    finally:
        for module, training in modes:
            module.training = training
    domain_logits = domain_head(torch.cat([domain_s.detach(), domain_t]))
    return AdversarialOutput(logits, domain_logits, domain_labels(domain_logits, n_s))
