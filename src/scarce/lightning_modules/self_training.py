r"""Self-training with class-balanced pseudo-labels (CBST, Zou et al., ECCV 2018): the second stage of an adaptation,
started from the checkpoint of a first one (source-only, DANN, AdvEnt, ...)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, PositiveInt, restricted_number_type
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from scarce._errors import ScarceError
from scarce.checkpoints import load_checkpoint, network_state_dict
from scarce.adaptation.pseudo_labels import ConfidenceHistogram, pseudo_labels
from scarce.lightning_modules.adversarial import AdversarialTraining
from scarce.lightning_modules.segmentation import Segmentation
from scarce.optim import keep_specs

__all__ = ["SelfTraining", "load_network_weights"]

Threshold = restricted_number_type("Threshold", float, [(">", 0.0), ("<=", 1.0)],
                                   docstring="a confidence threshold in (0, 1]")


def load_network_weights(path: str, option: str = "model.init_args.init_checkpoint") -> dict[str, torch.Tensor]:
    """The network weights (``net.*``, prefix dropped) of a Lightning checkpoint, or a plain FCN-8s state dict.

    Read through :func:`scarce.checkpoints.load_checkpoint` (weights only: no code from the file runs). Errors are
    :class:`ScarceError` lines naming ``option``, the file and the fix.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ScarceError(f"{option}: no checkpoint at {str(file)!r}; give the .ckpt of the first stage, e.g. "
                          "runs/fcn8s_rendered/checkpoints/last.ckpt")
    try:
        checkpoint = load_checkpoint(file)
    except ScarceError as error:  # unreadable, or asking to run code: either way not a usable checkpoint
        raise ScarceError(f"{option}: {str(file)!r} is not a PyTorch checkpoint readable with weights_only=True "
                          f"({error})") from None
    state = network_state_dict(checkpoint)
    if state is None:
        raise ScarceError(f"{option}: {str(file)!r} holds no state dict (a Lightning .ckpt or an FCN-8s state_dict)")
    return state


class SelfTraining(AdversarialTraining, Segmentation):
    r"""FCN-8s fine-tuned on source labels and on CBST pseudo-labels of the target, from a first stage's checkpoint.

    At :meth:`setup` the network is loaded from ``init_checkpoint`` (its ``net.*`` weights only) and copied into
    a frozen **teacher** (eval mode, no gradient, never stepped) that labels the target images. (In ``setup``, not
    ``__init__``: configs parse without the file, a missing file is one line from ``scarce fit``, and a resumed
    fit's checkpoint, restored after ``setup``, still wins.) Before the first training step one pass of the
    teacher over the target training set (``threshold_samples`` of it; augmented as in training, since those are
    the images it will label) fills a :class:`~scarce.adaptation.pseudo_labels.ConfidenceHistogram` (summed over
    DDP ranks), whose class-balanced thresholds :math:`k_c` (``portion``, ``max_threshold``) are then fixed for the run: the teacher does not change,
    so the thresholds would not either -- one CBST round is one fit; the next round starts from this run's
    checkpoint with a larger ``portion`` (the authors: 0.2, then + 0.05 a round up to 0.5). They are kept in the
    ``pseudo_label_thresholds`` buffer (saved in checkpoints, so a resumed fit skips the pass).

    Each step, with paired ``{"source", "target"}`` batches:

    .. math::

        L = L_{seg}(\text{source}) + w \, CE(\text{student}(x_t), \hat{y}_t), \qquad
        \hat{y}_t = \text{CBST}(\text{teacher}(x_t), k)

    where pixels that pass no class threshold are ignored (``ignore_index``) and :math:`w` is
    ``pseudo_label_weight``. The pseudo-label loss is unweighted: the thresholds already balance the classes (the
    class weights of :math:`L_{seg}`, if any, describe the source masks). It is averaged over the kept pixels (0 when
    none is kept). Source and target go through the student as one batch: with a batch-norm backbone
    (``batch_norm: true``) both are then normalised with the mixed batch's statistics, whose running averages are
    what the network uses at test time, so training and test normalise alike.

    Logged: ``train/loss``, ``train/seg_loss``, ``train/pseudo_label_loss``, ``train/pseudo_label_share`` (share of
    target pixels kept) and the validation metrics of :class:`Segmentation`.

    Args:
        init_checkpoint: the first stage's checkpoint (a Lightning ``.ckpt`` of ``Segmentation``,
            ``DANNSegmentation``, ``SelfTraining``, ... or an FCN-8s state dict); the network's options
            (``num_classes``, ``width_divisor``) must be those it was trained with.
        portion: CBST's :math:`p`, the share of each class's most confident target pixels kept.
        max_threshold: cap on every class threshold (None: none, as the authors' code).
        pseudo_label_weight: :math:`w`.
        threshold_samples: target training samples the thresholds are computed on (None: all of them).
        histogram_bins: bins of the confidence histogram over [0, 1] (thresholds within one bin width below the
            exact ones).
        **kwargs: the arguments of :class:`~scarce.lightning_modules.segmentation.Segmentation`.
    """

    def __init__(
        self,
        init_checkpoint: str,
        portion: ClosedUnitInterval = 0.2,
        max_threshold: Threshold | None = None,
        pseudo_label_weight: NonNegativeFloat = 1.0,
        threshold_samples: PositiveInt | None = None,
        histogram_bins: PositiveInt = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        keep_specs(self.hparams, "optimizer", "lr_scheduler")  # this save collects Segmentation's arguments again
        # A submodule from the start, so checkpoints of this module hold (and restore) it; weights set in setup().
        self.teacher = copy.deepcopy(self.net).requires_grad_(False).eval()
        # NaN until the pass over the target has run; inf turns a class off.
        self.register_buffer("pseudo_label_thresholds", torch.full((self.net.num_classes,), float("nan")))

    def setup(self, stage: str) -> None:
        """Student and teacher from ``init_checkpoint`` (a resumed fit then restores its own weights over them)."""
        path = self.hparams.init_checkpoint
        weights = load_network_weights(path)
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as error:
            problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
            raise ScarceError(f"model.init_args.init_checkpoint {path!r} does not fit this network (num_classes and "
                              f"width_divisor must be the first stage's): {problems[0][:200] if problems else error}"
                              ) from None
        self.teacher.load_state_dict(self.net.state_dict())

    def train(self, mode: bool = True) -> SelfTraining:
        """Lightning puts the whole module in training mode; the teacher stays in eval mode (no dropout)."""
        super().train(mode)
        self.teacher.eval()
        return self

    # ------------------------------------------------------------------------------------------ thresholds

    def on_train_start(self) -> None:
        if torch.isnan(self.pseudo_label_thresholds).any():
            self.pseudo_label_thresholds.copy_(self._thresholds_from_target())

    @torch.no_grad()
    def _thresholds_from_target(self) -> torch.Tensor:
        """CBST thresholds from one pass of the teacher over (part of) the target training set."""
        loaders = self.trainer.train_dataloader  # the CombinedLoader's iterables: {"source": ..., "target": ...}
        if not isinstance(loaders, dict) or "target" not in loaders:
            raise ScarceError("SelfTraining labels target training images: use paired batches "
                              "(`data.init_args.paired_target: true` with a `target`)")
        train = loaders["target"]
        # A loader of its own over the same (label-free) dataset and sampler: the training loader's iterator,
        # possibly with persistent workers, is left alone.
        loader = DataLoader(train.dataset, batch_size=train.batch_size, sampler=train.sampler,
                            num_workers=train.num_workers)
        histogram = ConfidenceHistogram(self.net.num_classes, self.hparams.histogram_bins, device=self.device)
        limit, seen = self.hparams.threshold_samples, 0
        for batch in loader:
            if limit is not None and seen >= limit:
                break
            image = batch["image"][: None if limit is None else limit - seen].to(self.device)
            histogram.update(self.teacher(image).float().softmax(1))
            seen += image.shape[0]
        counts = self.trainer.strategy.reduce(histogram.counts, reduce_op="sum")
        histogram.counts.copy_(counts)
        thresholds = histogram.thresholds(self.hparams.portion, self.hparams.max_threshold)
        rank_zero_info(f"CBST thresholds (portion {self.hparams.portion}, {seen} target images per rank): " +
                       ", ".join(f"{n}={k:.3f}" for n, k in zip(self.class_names, thresholds.tolist())))
        return thresholds.to(self.pseudo_label_thresholds)

    # ------------------------------------------------------------------------------------------ the step

    @torch.no_grad()
    def pseudo_label(self, image: torch.Tensor) -> torch.Tensor:
        """The teacher's CBST pseudo-labels ``(B, H, W)`` of target images ``(B, 3, H, W)``; ``ignore_index`` where
        no class passes its threshold."""
        return pseudo_labels(self.teacher(image), self.pseudo_label_thresholds, self.hparams.ignore_index)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        source, target = self.paired_batch(batch)
        n = source["image"].shape[0]
        ignore = self.hparams.ignore_index
        labels = self.pseudo_label(target["image"])
        logits = self(torch.cat([source["image"], target["image"]]))
        seg_loss = self.loss(logits[:n], source["mask"])
        kept = labels != ignore
        # Summed over the kept pixels and divided by their count: 0 (not NaN) when the teacher keeps none.
        pseudo_loss = F.cross_entropy(logits[n:].float(), labels, ignore_index=ignore, reduction="sum") / \
            kept.sum().clamp(min=1)
        loss = seg_loss + self.hparams.pseudo_label_weight * pseudo_loss
        if self._is_logging_step():
            self.log_dict({"train/seg_loss": seg_loss, "train/pseudo_label_loss": pseudo_loss,
                           "train/pseudo_label_share": kept.float().mean()}, batch_size=n)
            self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss
