"""Domain-adversarial FCN-8s (book 7.6): segmentation on labelled source images, domain confusion on unlabelled
target images, through gradient reversal."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAccuracy

from scarce._errors import ScarceError
from scarce.data.datasets._utils import verify_str_arg
from scarce.lightning_modules.segmentation import Segmentation
from scarce.nets.domain_heads import OutputDomainDiscriminator, Pool5DomainClassifier
from scarce.nets.grl import grad_reverse
from scarce.schedules import adversarial_coeff

__all__ = ["DANNSegmentation"]

def _pool5_channels(net: nn.Module) -> int:
    """Channels of FCN-8s' pool5: those of the backbone's last convolution (512 / ``width_divisor``)."""
    return [m for m in net.features if isinstance(m, nn.Conv2d)][-1].out_channels


class DANNSegmentation(Segmentation):
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
    ``docs/dann_segmentation.md`` for the defaults.

    Placements (``placement``):

    - ``pool5``: the book's :class:`~scarce.nets.domain_heads.Pool5DomainClassifier` on the pool5 features,
      one domain label per image.
    - ``output``: :class:`~scarce.nets.domain_heads.OutputDomainDiscriminator` on the softmax maps, one domain
      label per pixel.

    ``adaptation_weight: 0`` trains the source-only baseline with the same code: target images only go through
    the network without gradient (in eval mode), and the domain head becomes a probe on detached inputs that
    measures how separable the domains are, without changing the segmentation network.

    Logged: ``train/loss`` (total), ``train/seg_loss``, ``train/domain_loss``, ``train/domain_acc``,
    ``train/lambda``; at the end of each validation ``val/source_miou``, ``val/target_miou``, ``val/miou_gap``,
    ``val/*_acc`` (pixel accuracy) and ``val/domain_acc`` (domain classifier accuracy over both validation
    sets; near 0.5 when the domains align). The data module must give paired batches
    (``SegmentationDataModule(paired_target=True)``).

    Args:
        placement: ``pool5`` (the book's) or ``output`` (output space).
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
        **kwargs: the arguments of :class:`~scarce.lightning_modules.segmentation.Segmentation` (``num_classes``,
            ``width_divisor``, ``optimizer``, ``lr``, ...).
    """

    def __init__(
        self,
        placement: Literal["pool5", "output"] = "pool5",
        adaptation_weight: float = 1.0,
        lambda_schedule: Literal["dann", "constant"] = "dann",
        lambda_gamma: float = 10.0,
        domain_loss_weight: float = 1.0,
        domain_dropout: float = 0.5,
        discriminator_width: int = 64,
        discriminator_layers: int = 3,
        discriminator_downsamples: int = 0,
        reversed_domains: Literal["both", "target"] = "both",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        verify_str_arg(placement, "model.placement", ("pool5", "output"))
        verify_str_arg(lambda_schedule, "model.lambda_schedule", ("dann", "constant"))
        verify_str_arg(reversed_domains, "model.reversed_domains", ("both", "target"))
        if adaptation_weight < 0 or domain_loss_weight < 0:
            raise ScarceError(f"model.adaptation_weight ({adaptation_weight}) and model.domain_loss_weight "
                              f"({domain_loss_weight}) must be >= 0; use adaptation_weight: 0 for source-only")
        self.save_hyperparameters()
        if placement == "pool5":
            self.domain_head = Pool5DomainClassifier(_pool5_channels(self.net), domain_dropout)
        else:
            self.domain_head = OutputDomainDiscriminator(self.net.num_classes, discriminator_width,
                                                         discriminator_layers, discriminator_downsamples)
        # Summed over the whole validation split (both domains) and synced across DDP ranks in compute().
        self.val_domain_acc = BinaryAccuracy()

    @property
    def adapting(self) -> bool:
        return self.hparams.adaptation_weight > 0

    # ------------------------------------------------------------------------------------------ schedule

    def current_lambda(self) -> float:
        """:math:`\\lambda_p` at the current step (``adaptation_weight`` times the ramp)."""
        hp = self.hparams
        return adversarial_coeff(self.global_step, int(self.trainer.estimated_stepping_batches),
                                 hp.adaptation_weight, hp.lambda_schedule, hp.lambda_gamma)

    # ------------------------------------------------------------------------------------------ forward

    def _domain_input(self, feats: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """What the domain head sees: pool5 features, or the class probabilities."""
        return feats["pool5"] if self.hparams.placement == "pool5" else logits.softmax(1)

    def _forward_all(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segmentation logits ``(B, C, H, W)`` and the domain head's input for ``image``."""
        feats = self.net.forward_features(image)
        logits = self.net.forward_head(feats, image.shape[-2:])
        return logits, self._domain_input(feats, logits)

    def adversarial_forward(self, x_s: torch.Tensor, x_t: torch.Tensor,
                            coeff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training forward pass.

        Args:
            x_s: source images ``(B_s, 3, H, W)``.
            x_t: target images ``(B_t, 3, H, W)``.
            coeff: :math:`\\lambda` of the gradient reversal (ignored when not adapting).

        Returns:
            Source segmentation logits ``(B_s, C, H, W)``, domain logits ``(B_s + B_t, 2)`` (pool5) or
            ``(B_s + B_t, 2, h, w)`` (output), and the matching domain labels (0 source, 1 target).
        """
        n_s = x_s.shape[0]
        if self.adapting:
            # One pass over both domains; FCN-8s has no batch norm, so this equals two passes, only faster.
            logits, domain_in = self._forward_all(torch.cat([x_s, x_t]))
            logits = logits[:n_s]
            if self.hparams.reversed_domains == "target":
                # The head still learns from both domains; only the target's predictions are pushed towards
                # the source's, so the source's stay where the segmentation loss puts them.
                domain_in = torch.cat([domain_in[:n_s].detach(), domain_in[n_s:]])
            domain_logits = self.domain_head(grad_reverse(domain_in, coeff))
        else:
            logits, domain_s = self._forward_all(x_s)
            with torch.no_grad():
                was_training = self.net.training
                self.net.eval()
                _, domain_t = self._forward_all(x_t)
                self.net.train(was_training)
            domain_logits = self.domain_head(torch.cat([domain_s.detach(), domain_t]))
        labels = torch.zeros(domain_logits.shape[:1] + domain_logits.shape[2:], dtype=torch.long,
                             device=domain_logits.device)
        labels[n_s:] = 1
        return logits, domain_logits, labels

    # ------------------------------------------------------------------------------------------ steps

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "source" not in batch or "target" not in batch:
            raise ScarceError("DANNSegmentation trains on paired source + target batches: set "
                              "`data.init_args.paired_target: true` (SegmentationDataModule) and give a `target`")
        source, x_t = batch["source"], batch["target"]["image"]
        coeff = self.current_lambda()
        logits, domain_logits, labels = self.adversarial_forward(source["image"], x_t, coeff)
        seg_loss = self.loss(logits, source["mask"])
        domain_loss = F.cross_entropy(domain_logits.float(), labels)
        loss = seg_loss + self.hparams.domain_loss_weight * domain_loss
        domain_acc = (domain_logits.detach().argmax(1) == labels).float().mean()
        n = source["image"].shape[0]
        self.log_dict({"train/seg_loss": seg_loss, "train/domain_loss": domain_loss, "train/domain_acc": domain_acc,
                       "train/lambda": float(coeff)}, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        if dataloader_idx >= len(self.val_metrics):
            raise ScarceError(f"DANNSegmentation supports {len(self.val_metrics)} validation dataloaders (source, "
                              f"target); got dataloader {dataloader_idx}")
        logits, domain_in = self._forward_all(batch["image"])
        if self._num_loaders("val") > 1:
            pred = self.domain_head(domain_in).argmax(1)
            self.val_domain_acc.update(pred, torch.full_like(pred, dataloader_idx))
        return self._common_step(batch, "val", dataloader_idx, logits=logits)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.val_domain_acc.update_called:
            self.log("val/domain_acc", self.val_domain_acc.compute())
        self.val_domain_acc.reset()
