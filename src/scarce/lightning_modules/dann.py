"""Domain-adversarial training (DANN, Ganin et al. 2016) for classification; also the source-only baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from scarce.lightning_modules.adversarial import AdversarialTraining, LambdaSchedule
from scarce.nets.dann import DANN_NETWORKS, DANNNetwork
from scarce.optim import as_factory, configure_optimizer, keep_specs, spec

__all__ = ["DANN", "PAPER_ANNEALING", "PAPER_SGD"]

DOMAINS = ("source", "target")

PAPER_SGD = spec("torch.optim.SGD", lr=0.01, momentum=0.9)
"""The paper's optimizer (section 5.2.2): SGD, momentum 0.9, initial learning rate 0.01."""

PAPER_ANNEALING = spec("scarce.schedules.DANNAnnealing")
"""The paper's learning-rate annealing ``lr / (1 + 10 p)^0.75``, stepped every batch."""


class DANN(AdversarialTraining, LightningModule):
    """DANN on labelled source and unlabelled target batches (``{"source": {...}, "target": {...}}``).

    The loss is ``cls_loss(source) + domain_loss(source, target)``; the domain loss reaches the feature
    extractor through gradient reversal scaled by ``lambda_p = adaptation_weight * schedule(p)``, while the
    domain classifier itself always learns at full rate.

    The step, the schedule and the probe are :class:`~scarce.lightning_modules.adversarial.AdversarialTraining`'s.
    With ``adaptation_weight: 0`` the same code trains the source-only baseline: target images never pass
    through the trained feature extractor in training mode (so batch-norm statistics stay source-only), and
    the domain classifier becomes a probe on detached features that measures how separable the domains are.

    With ``batch_norm_stats: per_domain`` (the default) source and target go through the whole network,
    domain classifier included, in separate forward passes, so in training every batch-norm layer
    normalises each domain with its own batch statistics, as plain PyTorch DANN loops do when they feed the
    two batches one after the other. In the features this removes the first-order shift (MNIST-M's colour
    and contrast); in the domain classifier it keeps the adversary from winning on batch means alone. On
    MNIST -> MNIST-M, target accuracy after 3 epochs: 0.91 per domain; 0.72 with per-domain features but
    a joint domain classifier; 0.47 with one joint batch (``joint``). The running statistics used in
    evaluation average both domains. Networks without batch norm are unaffected.

    Args:
        network: ``"digits"`` (the paper's MNIST nets, :class:`~scarce.nets.dann.DigitsDANN`), ``"blobs"`` (small
            MLPs, :class:`~scarce.nets.dann.BlobsDANN`), or a :class:`~scarce.nets.dann.DANNNetwork` class given by
            ``class_path`` with its ``init_args`` (built with ``num_classes`` as its first argument).
        num_classes: Number of label classes.
        adaptation_weight: Maximum lambda; 0 gives the source-only baseline.
        lambda_schedule: ``"dann"`` (``2/(1+exp(-gamma p))-1``) or ``"constant"``.
        lambda_gamma: ``gamma`` of the lambda schedule.
        optimizer: The optimizer (``class_path`` + ``init_args``; default the paper's SGD, lr 0.01, momentum 0.9).
        lr_scheduler: The learning-rate schedule (default the paper's annealing,
            :class:`~scarce.schedules.DANNAnnealing`); ``null`` keeps the optimizer's rate. See :mod:`scarce.optim`.
        batch_norm_stats: ``"per_domain"`` (separate forward passes) or ``"joint"`` (one concatenated batch).
        channels_last: keep the network's weights and inputs in the NHWC memory layout. The same arithmetic
            (results differ only by float summation order); on CPU oneDNN's NHWC convolutions make the digits step
            cost about 1.6x less CPU time (``benchmarks/dann_step_options.py``).
    """

    task_loss_name = "cls_loss"

    def __init__(self, network: Literal["digits", "blobs"] | Callable[[int], DANNNetwork] = "digits",
                 num_classes: PositiveInt = 10, adaptation_weight: NonNegativeFloat = 1.0,
                 lambda_schedule: LambdaSchedule = "dann", lambda_gamma: float = 10.0,
                 optimizer: OptimizerCallable = PAPER_SGD,
                 lr_scheduler: LRSchedulerCallable | None = PAPER_ANNEALING,
                 batch_norm_stats: Literal["per_domain", "joint"] = "per_domain", channels_last: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        keep_specs(self.hparams, "network", "optimizer", "lr_scheduler")
        self.optimizer_factory = as_factory(optimizer)
        self.lr_scheduler_factory = None if lr_scheduler is None else as_factory(lr_scheduler)
        build = DANN_NETWORKS[network] if isinstance(network, str) else as_factory(network)
        self.net = build(num_classes)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)  # 4-D weights only; loading a checkpoint keeps the layout
        # Metrics accumulate over the whole split and sync across DDP ranks in compute().
        acc = lambda: MulticlassAccuracy(num_classes=num_classes, average="micro")  # noqa: E731
        self.train_acc = acc()
        self.eval_acc = torch.nn.ModuleDict({d: acc() for d in DOMAINS})
        self.eval_domain_acc = BinaryAccuracy()

    def to_memory_format(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in the layout the network's weights use (NHWC with ``channels_last``), as
        ``Segmentation.to_memory_format`` does."""
        if self.hparams.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def paired_batch(self, batch: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        source, target = super().paired_batch(batch)
        return (dict(source, image=self.to_memory_format(source["image"])),
                dict(target, image=self.to_memory_format(target["image"])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.net(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, F)`` the classifiers see."""
        return self.net.features(x)

    @property
    def domain_head(self) -> torch.nn.Module:
        return self.net.domain_classifier

    def domain_forward(self, x: torch.Tensor, num_labelled: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        return self.net.domain_forward(x, num_labelled)

    def task_loss(self, logits: torch.Tensor, source: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(logits, source["label"])

    def log_task_metrics(self, logits: torch.Tensor, source: dict[str, Any]) -> None:
        self.train_acc(logits, source["label"])
        self.log("train/source_acc", self.train_acc, prog_bar=True)

    def _eval_step(self, batch: dict, dataloader_idx: int) -> None:
        domain = DOMAINS[dataloader_idx]
        logits, feats = self.net(self.to_memory_format(batch["image"]))
        self.eval_acc[domain].update(logits, batch["label"])
        domain_pred = self.net.domain_classifier(feats).argmax(1)
        self.eval_domain_acc.update(domain_pred, torch.full_like(domain_pred, dataloader_idx))

    def _eval_epoch_end(self, stage: str) -> None:
        for domain in DOMAINS:
            metric = self.eval_acc[domain]
            if metric.update_called:
                self.log(f"{stage}/{domain}_acc", metric.compute(), prog_bar=True)
            metric.reset()
        if self.eval_domain_acc.update_called:
            self.log(f"{stage}/domain_acc", self.eval_domain_acc.compute())
        self.eval_domain_acc.reset()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch["image"]).argmax(1)

    def configure_optimizers(self):
        return configure_optimizer(self.parameters(), self.optimizer_factory, self.lr_scheduler_factory,
                                   lambda: self.trainer.estimated_stepping_batches)
