"""Domain-adversarial FCN-8s (book 7.6): segmentation on labelled source images, domain confusion on unlabelled
target images, through gradient reversal; with ``placement: entropy`` and ``entropy_weight``, ADVENT's AdvEnt and
MinEnt (Vu et al., CVPR 2019) on the same step."""

from __future__ import annotations

from typing import Any, Literal

import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn
from torchmetrics.classification import BinaryAccuracy

from scarce._errors import ScarceError
from scarce.adaptation.entropy import entropy_loss, self_information
from scarce.lightning_modules.adversarial import AdversarialTraining, LambdaSchedule, ReversedDomains
from scarce.lightning_modules.segmentation import Segmentation
from scarce.nets.domain_heads import OutputDomainDiscriminator, Pool5DomainClassifier
from scarce.optim import keep_specs

__all__ = ["DANNSegmentation"]


def _pool5_channels(net: nn.Module) -> int:
    """Channels of FCN-8s' pool5: those of the backbone's last convolution (512 / ``width_divisor``)."""
    return [m for m in net.features if isinstance(m, nn.Conv2d)][-1].out_channels


class DANNSegmentation(AdversarialTraining, Segmentation):
    r"""FCN-8s plus a domain classifier behind gradient reversal, trained on ``{"source", "target"}`` batches.

    The training loss is

    .. math::

        L = L_{seg}(\text{source}) + w \, L_{dom}(\text{source}, \text{target})

    where :math:`w` is ``domain_loss_weight``. The domain classifier descends :math:`w L_{dom}` at full rate; the
    segmentation network receives its gradient reversed and scaled by
    :math:`\lambda_p = \text{adaptation\_weight} \cdot (2 / (1 + e^{-\gamma p}) - 1)` (``lambda_schedule: dann``,
    :math:`p` the fraction of training done) or by ``adaptation_weight`` itself (``constant``). Keeping
    :math:`w` and :math:`\lambda` apart matters: the book's single weight of 1e-4 shrank both, so its
    classifier (under Adam, which undoes a loss scale on parameters only that loss touches) still learnt to
    0.99 accuracy while the features got 1e-4 of its gradient, far below the segmentation gradient. See
    ``docs/domain_adaptation_segmentation.md`` for the defaults. The step, the schedule and the probe are
    :class:`~scarce.lightning_modules.adversarial.AdversarialTraining`'s; this class adds the domain heads.

    Placements (``placement``):

    - ``pool5``: the book's :class:`~scarce.nets.domain_heads.Pool5DomainClassifier` on the pool5 features,
      one domain label per image.
    - ``output``: :class:`~scarce.nets.domain_heads.OutputDomainDiscriminator` on the softmax maps, one domain
      label per pixel.
    - ``entropy``: AdvEnt (Vu et al. 2019): the same discriminator on the weighted self-information maps
      :math:`-P \log P / \log C` (:func:`~scarce.adaptation.entropy.self_information`), one domain label per
      pixel; with ``reversed_domains: target`` only the target's maps are pushed towards the source's, as ADVENT's
      adversarial loss does.

    MinEnt (Vu et al. 2019): ``entropy_weight > 0`` adds :math:`\lambda^{ent}_p \, L_{ent}(\text{target})`, the
    mean normalised entropy of the target predictions (:func:`~scarce.adaptation.entropy.entropy_loss`), with
    :math:`\lambda^{ent}_p` the ``lambda_schedule`` ramp times ``entropy_weight``: ramped with ``dann`` (an
    untrained network's guesses are not made confident), fixed with ``constant``. MinEnt alone is
    ``adaptation_weight: 0`` with ``entropy_weight > 0``: the target then goes through the network with gradient
    for the entropy term only, and the domain head stays a probe (``val/domain_acc``); with both weights above 0
    the step trains AdvEnt (or DANN) and MinEnt together.

    ``adaptation_weight: 0`` trains the source-only baseline with the same code: target images only go through
    the network without gradient (in eval mode), and the domain head becomes a probe on detached inputs that
    measures how separable the domains are, without changing the segmentation network.

    Logged: ``train/loss`` (total), ``train/seg_loss``, ``train/domain_loss``, ``train/domain_acc``,
    ``train/lambda``; at the end of each validation ``val/source_miou``, ``val/target_miou``, ``val/miou_gap``,
    ``val/*_acc`` (pixel accuracy) and ``val/domain_acc`` (domain classifier accuracy over both validation
    sets; near 0.5 when the domains align); with ``entropy_weight > 0`` also ``train/entropy_loss`` and
    ``train/entropy_loss_weight``. The data module must give paired batches
    (``SegmentationDataModule(paired_target=True)``).

    Args:
        placement: ``pool5`` (the book's), ``output`` (output space) or ``entropy`` (AdvEnt).
        adaptation_weight: maximum :math:`\lambda` of the gradient reversal; 0 gives the source-only baseline.
        lambda_schedule: ``dann`` (ramp from 0 to ``adaptation_weight``) or ``constant``.
        lambda_gamma: :math:`\gamma` of the ramp.
        domain_loss_weight: :math:`w`, weight of the domain loss in the total loss.
        domain_dropout: dropout of the pool5 domain classifier.
        discriminator_width: channels of the output-space discriminator.
        discriminator_layers: 3x3 convolutions of the output-space discriminator.
        discriminator_downsamples: how many of them have stride 2 (0: per-pixel logits at full resolution).
        reversed_domains: whose inputs to the domain head get the reversed gradient: ``both`` (DANN's: source
            and target are pushed towards each other) or ``target`` (only the target towards the source, as in
            output-space adaptation; the head still learns from both).
        entropy_weight: MinEnt's weight (at the end of the ramp); 0 turns MinEnt off.
        batch_norm_stats: with a batch-norm backbone (``batch_norm: true``), ``per_domain`` sends source and target
            through the network in separate passes, so each domain is normalised with its own batch statistics in
            training (what made DANN work on MNIST -> MNIST-M, see :class:`~scarce.lightning_modules.dann.DANN`);
            ``joint`` sends one concatenated batch (one pass, cheaper; the same without batch norm).
        **kwargs: the arguments of :class:`~scarce.lightning_modules.segmentation.Segmentation` (``num_classes``,
            ``width_divisor``, ``optimizer``, ``lr``, ...).
    """

    task_loss_name = "seg_loss"

    def __init__(
        self,
        placement: Literal["pool5", "output", "entropy"] = "pool5",
        adaptation_weight: NonNegativeFloat = 1.0,
        lambda_schedule: LambdaSchedule = "dann",
        lambda_gamma: float = 10.0,
        domain_loss_weight: NonNegativeFloat = 1.0,
        domain_dropout: ClosedUnitInterval = 0.5,
        discriminator_width: PositiveInt = 64,
        discriminator_layers: PositiveInt = 3,
        discriminator_downsamples: NonNegativeInt = 0,
        reversed_domains: ReversedDomains = "both",
        entropy_weight: NonNegativeFloat = 0.0,
        batch_norm_stats: Literal["joint", "per_domain"] = "joint",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if placement != "pool5" and discriminator_downsamples > discriminator_layers:
            raise ScarceError(f"model.discriminator_downsamples ({discriminator_downsamples}) must be at most "
                              f"model.discriminator_layers ({discriminator_layers}): only convolutions downsample")
        self.save_hyperparameters()
        keep_specs(self.hparams, "optimizer", "lr_scheduler")  # this save collects Segmentation's arguments again
        if placement == "pool5":
            self.domain_head = Pool5DomainClassifier(_pool5_channels(self.net), domain_dropout)
        else:
            self.domain_head = OutputDomainDiscriminator(self.net.num_classes, discriminator_width,
                                                         discriminator_layers, discriminator_downsamples)
        # Summed over the whole validation split (both domains) and synced across DDP ranks in compute().
        self.val_domain_acc = BinaryAccuracy()

    def domain_forward(self, x: torch.Tensor, num_labelled: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Segmentation logits ``(num_labelled, C, H, W)`` and what the domain head sees for every image: pool5
        features, the class probabilities, or the weighted self-information maps."""
        feats = self.net.forward_features(self.to_memory_format(x))
        logits = self.net.forward_head(feats, x.shape[-2:])
        placement = self.hparams.placement
        if placement == "pool5":
            domain_in = feats["pool5"]
        else:
            domain_in = logits.softmax(1) if placement == "output" else self_information(logits)
        return (logits[:num_labelled] if num_labelled else None), domain_in

    @property
    def wants_target_logits(self) -> bool:
        return self.hparams.entropy_weight > 0

    def target_losses(self, target_logits: torch.Tensor) -> list[tuple[str, float, torch.Tensor]]:
        """MinEnt: the target's mean normalised entropy, weighted by the ramped ``entropy_weight``."""
        return [("entropy_loss", self.current_lambda(self.hparams.entropy_weight), entropy_loss(target_logits))]

    def task_loss(self, logits: torch.Tensor, source: dict[str, Any]) -> torch.Tensor:
        return self.loss(logits, source["mask"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        if dataloader_idx >= len(self.val_metrics):
            raise ScarceError(f"DANNSegmentation supports {len(self.val_metrics)} validation dataloaders (source, "
                              f"target); got dataloader {dataloader_idx}")
        logits, domain_in = self.domain_forward(batch["image"], batch["image"].shape[0])
        if self._num_loaders("val") > 1:
            pred = self.domain_head(domain_in).argmax(1)
            self.val_domain_acc.update(pred, torch.full_like(pred, dataloader_idx))
        return self._common_step(batch, "val", dataloader_idx, logits=logits)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.val_domain_acc.update_called:
            self.log("val/domain_acc", self.val_domain_acc.compute())
        self.val_domain_acc.reset()
