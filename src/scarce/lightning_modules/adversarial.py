r"""What every domain-adaptation LightningModule shares: paired batches, the lambda schedule, the source-only probe,
the adversarial training step and step-gated training logs.

:class:`AdversarialTraining` is a mixin placed before the LightningModule base class
(``class DANN(AdversarialTraining, LightningModule)``, ``class DANNSegmentation(AdversarialTraining, Segmentation)``).
The pass itself is :func:`scarce.nets.adversarial.adversarial_pass` / :func:`~scarce.nets.adversarial.probe_pass`;
the mixin feeds it the module's network and domain head and turns its output into the training loss

.. math::

    L = L_{task}(\text{source}) + w \, L_{dom}(\text{source}, \text{target}),

with the domain head behind gradient reversal scaled by :math:`\lambda_p` (:meth:`AdversarialTraining.current_lambda`).

A subclass provides:

- ``self.net`` (the network the probe puts in eval mode for the target) and ``self.domain_head``;
- :meth:`~AdversarialTraining.domain_forward` ``(x, num_labelled) -> (task logits of x[:num_labelled], domain-head
  input of every row)``;
- :meth:`~AdversarialTraining.task_loss` and :attr:`~AdversarialTraining.task_loss_name`;
- the hyperparameters ``adaptation_weight`` (0: source-only with the head as a probe), ``lambda_schedule`` and
  ``lambda_gamma``; optionally ``domain_loss_weight`` (:math:`w`, default 1), ``reversed_domains`` (``both``) and
  ``batch_norm_stats`` (``joint``; ``per_domain`` gives one pass per domain).

Losses on the unlabelled target join the same step through :meth:`~AdversarialTraining.target_losses`: a subclass
that sets :attr:`~AdversarialTraining.wants_target_logits` gets the target's task logits, with gradient, from the
pass (``with_target_logits``; in the source-only probe too, whose head stays on detached inputs), and each term
``(name, weight, value)`` adds ``weight * value`` to the loss and logs ``train/<name>``. MinEnt is such a term
(:class:`~scarce.lightning_modules.dann_segmentation.DANNSegmentation`'s ``entropy_weight``), ramped by
:meth:`current_lambda` with its own weight. Self-training, which has no domain head, reuses :meth:`paired_batch`
and :meth:`_is_logging_step` and writes its own ``training_step``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from scarce._errors import ScarceError
from scarce.lightning_modules._logging_steps import is_logging_step
from scarce.nets.adversarial import AdversarialOutput, adversarial_pass, probe_pass
from scarce.schedules import adversarial_coeff

__all__ = ["AdversarialTraining", "LambdaSchedule", "ReversedDomains"]

LambdaSchedule = Literal["dann", "constant"]
"""``dann``: :math:`\\lambda_p` ramps from 0 to ``adaptation_weight`` (:func:`scarce.schedules.dann_lambda`);
``constant``: ``adaptation_weight`` throughout."""

ReversedDomains = Literal["both", "target"]
"""Whose domain-head inputs get the reversed gradient: ``both`` (DANN's) or ``target`` (output-space adaptation)."""


class AdversarialTraining:
    """Mixin of the domain-adaptation LightningModules (see the module docstring for what a subclass provides)."""

    task_loss_name: str = "task_loss"
    """Name of the task loss in the training logs (``train/<name>``)."""

    # ------------------------------------------------------------------------------------------ to provide

    def domain_forward(self, x: torch.Tensor, num_labelled: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Task logits of ``x[:num_labelled]`` (None when 0) and the domain head's input for every row of ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must implement domain_forward(x, num_labelled)")

    def task_loss(self, logits: torch.Tensor, source: dict[str, Any]) -> torch.Tensor:
        """The supervised loss of the source batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement task_loss(logits, source)")

    def log_task_metrics(self, logits: torch.Tensor, source: dict[str, Any]) -> None:
        """Extra training metrics, on logging steps only (e.g. the source accuracy)."""

    @property
    def wants_target_logits(self) -> bool:
        """Whether :meth:`target_losses` has terms, so the pass must return the target's task logits."""
        return False

    def target_losses(self, target_logits: torch.Tensor) -> list[tuple[str, float, torch.Tensor]]:
        """Extra ``(name, weight, value)`` loss terms on the target's task logits ``(B_t, C, ...)``."""
        return []

    # ------------------------------------------------------------------------------------------ schedule

    @property
    def adapting(self) -> bool:
        """Whether the domain loss reaches the network (``adaptation_weight > 0``); else the head is a probe."""
        return self.hparams.adaptation_weight > 0

    def current_lambda(self, weight: float | None = None) -> float:
        """:math:`\\lambda_p` at the current step: ``weight`` (default ``adaptation_weight``) times the schedule's
        ramp, so every adaptation term of a module follows one ``lambda_schedule``."""
        hp = self.hparams
        weight = hp.adaptation_weight if weight is None else weight
        return adversarial_coeff(self.global_step, int(self.trainer.estimated_stepping_batches),
                                 weight, hp.lambda_schedule, hp.lambda_gamma)

    # ------------------------------------------------------------------------------------------ batches

    def paired_batch(self, batch: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ``source`` and ``target`` parts of a paired training batch, or a ScarceError naming the fix."""
        if not isinstance(batch, dict) or "source" not in batch or "target" not in batch:
            raise ScarceError(
                f"{type(self).__name__} trains on paired source + target batches ({{'source': ..., 'target': ...}}): "
                "use a DataModule that pairs them, e.g. SegmentationDataModule with `data.init_args.paired_target: "
                "true` and a `target`, or a DomainAdaptationDataModule (DigitsDataModule, BlobsDataModule)")
        return batch["source"], batch["target"]

    # ------------------------------------------------------------------------------------------ the step

    def adversarial_step(self, x_s: torch.Tensor, x_t: torch.Tensor, coeff: float) -> AdversarialOutput:
        """Source task logits, domain logits and domain labels of one step (adapting, or the source-only probe);
        the task logits hold the target rows too, after the source's, when :attr:`wants_target_logits`."""
        with_target = self.wants_target_logits
        if not self.adapting:
            return probe_pass(self.domain_forward, self.net, self.domain_head, x_s, x_t,
                              with_target_logits=with_target)
        hp = self.hparams
        return adversarial_pass(self.domain_forward, self.domain_head, x_s, x_t, coeff,
                                per_domain=hp.get("batch_norm_stats", "joint") == "per_domain",
                                reversed_domains=hp.get("reversed_domains", "both"), with_target_logits=with_target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        source, target = self.paired_batch(batch)
        coeff = self.current_lambda()
        out = self.adversarial_step(source["image"], target["image"], coeff)
        n = source["image"].shape[0]
        logits = out.logits[:n]
        task_loss = self.task_loss(logits, source)
        domain_loss = F.cross_entropy(out.domain_logits.float(), out.domain_labels)
        loss = task_loss + self.hparams.get("domain_loss_weight", 1.0) * domain_loss
        extra = self.target_losses(out.logits[n:]) if self.wants_target_logits else []
        for _, weight, value in extra:
            loss = loss + weight * value
        if self._is_logging_step():
            domain_acc = (out.domain_logits.detach().argmax(1) == out.domain_labels).float().mean()
            self.log_dict({f"train/{self.task_loss_name}": task_loss, "train/domain_loss": domain_loss,
                           "train/domain_acc": domain_acc, "train/lambda": float(coeff),
                           **{f"train/{name}": value for name, _, value in extra},
                           **{f"train/{name}_weight": float(weight) for name, weight, _ in extra}}, batch_size=n)
            self.log("train/loss", loss, prog_bar=True, batch_size=n)
            self.log_task_metrics(logits.detach(), source)
        return loss

    def _is_logging_step(self) -> bool:
        """Whether the trainer writes this step's logs (see ``_logging_steps.is_logging_step``)."""
        return is_logging_step(self)
