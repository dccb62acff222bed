r"""Class-balanced pseudo-labels for self-training: CBST (Zou et al., ECCV 2018, https://arxiv.org/abs/1810.07911).

A model trained on the source labels predicts the target images; its most confident predictions become
labels for the next round. A single confidence threshold would keep mostly the easy, frequent classes (road,
sky), so CBST sets one threshold per class: with :math:`p` the *portion*, :math:`k_c` is the confidence of the
pixel ranked :math:`\lfloor p\,N_c \rfloor` among the :math:`N_c` pixels predicted as class :math:`c`, sorted by
confidence from the top, so that the top :math:`p` of every class are kept. A pixel then takes the label

.. math::

    \hat{y} = \operatorname*{arg\,max}_c \frac{P^{(c)}}{k_c}
    \quad \text{if} \quad \max_c \frac{P^{(c)}}{k_c} \geq 1, \qquad \text{else ignored},

the closed-form pseudo-label step of the paper's objective (which writes the threshold through its negative
log), as the authors' ``label_selection`` (``crst_seg.py`` in github.com/yzou2/CRST, which holds their CBST
code) computes it, ratios ``>= 1`` kept. Their code raises :math:`p` from 0.2 by 0.05 a round up to 0.5.

Choices against the authors' code (``kc_parameters``):

- A class with no selected pixel (never predicted, or :math:`\lfloor p\,N_c \rfloor = 0`) gets the threshold
  :math:`+\infty`, so none of its pixels is kept; theirs gets 1.0, which still keeps pixels whose float32
  softmax saturated to exactly 1 -- so ``portion=0`` would not select nothing.
- ``max_threshold`` optionally caps the thresholds (:math:`\min(k_c, \text{cap})`, e.g. 0.9, so a class whose
  predictions are all confident does not demand near-certainty); the authors' code has no cap, and the
  default here (``None``) has none either.
- Instead of their list of every (4x subsampled) confidence per class, :class:`ConfidenceHistogram` counts
  confidences in fixed bins per class, so a whole dataset fits in :math:`C \times \text{bins}` integers;
  :func:`class_balanced_thresholds` is the exact version on tensors that fit in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ConfidenceHistogram", "class_balanced_thresholds", "pseudo_labels"]

RULES = ("cbst", "argmax")


def class_balanced_thresholds(
    probs_or_confidences: torch.Tensor,
    predictions: torch.Tensor | None = None,
    num_classes: int | None = None,
    *,
    portion: float,
    max_threshold: float | None = None,
) -> torch.Tensor:
    r"""CBST's per-class confidence thresholds :math:`k_c`, exactly (sorting every pixel of each class).

    For each class :math:`c`, with :math:`N_c` pixels predicted as :math:`c` and their confidences sorted from the
    top, :math:`n_c = \lfloor p\,N_c \rfloor` (computed in float64, as the authors' ``math.floor(len * portion)``):
    :math:`k_c` is the :math:`n_c`-th largest confidence, so that keeping the pixels with confidence
    :math:`\geq k_c` keeps at least the top :math:`n_c` (more if several share the value :math:`k_c`).
    :math:`k_c = +\infty` when :math:`n_c = 0`.

    Args:
        probs_or_confidences: either softmax probabilities with classes along dimension 1, in which case the
            confidence and prediction of a pixel are the max and argmax over classes and ``predictions`` is
            ``None``; or per-pixel confidences with the shape of ``predictions``.
        predictions: the predicted class of each pixel, with ``probs_or_confidences`` holding confidences;
            values outside ``[0, num_classes)`` (an ignore index, say) are left out.
        num_classes: :math:`C`; required with ``predictions``, read from dimension 1 of the probabilities
            otherwise.
        portion: :math:`p \in [0, 1]`, the share of each class's pixels to keep; 0 keeps none, 1 all.
        max_threshold: cap on every finite threshold, in ``(0, 1]``; ``None`` for none.

    Returns:
        float32 thresholds, one per class; ``inf`` for a class with no selected pixel.

    Shape:
        - probs_or_confidences: :math:`(B, C, H, W)` probabilities, or :math:`(B, H, W)` (any shape) confidences.
        - predictions: :math:`(B, H, W)`, the shape of the confidences, integer.
        - Output: :math:`(C,)`.

    Examples::

        >>> confidences = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.5])
        >>> predictions = torch.tensor([0, 0, 0, 0, 1, 1])
        >>> class_balanced_thresholds(confidences, predictions, 3, portion=0.5)
        tensor([0.8000, 0.9500,    inf])
    """
    confidences, predictions, num_classes = _confidences_and_predictions(
        probs_or_confidences, predictions, num_classes
    )
    _check_portion(portion, max_threshold)
    thresholds = torch.full((num_classes,), float("inf"), dtype=torch.float32)
    for c in range(num_classes):
        ranked = confidences[predictions == c].float().sort(descending=True).values
        n = int(torch.floor(torch.tensor(ranked.numel(), dtype=torch.float64) * portion))
        if n > 0:
            thresholds[c] = ranked[n - 1]
    return _cap(thresholds, max_threshold).to(probs_or_confidences.device)


class ConfidenceHistogram:
    r"""CBST thresholds over a whole dataset in fixed memory: per-class histograms of confidences.

    Every :meth:`update` adds each pixel's confidence to the histogram of its predicted class: ``bins`` equal bins
    over ``[0, 1]``, bin :math:`\lfloor \text{conf} \cdot \text{bins} \rfloor` (a confidence of 1 goes to the last
    bin). :meth:`thresholds` then returns, for each class, the lower edge of the bin that holds the exact
    threshold of :func:`class_balanced_thresholds` -- at most one bin width below it, never above it, so the
    pixels it keeps are a superset of the exact ones. Counts are int64 in :attr:`counts`, so histograms from
    several processes add up (``torch.distributed.all_reduce(histogram.counts)``) or merge with ``+=``.

    Args:
        num_classes: :math:`C`.
        bins: number of bins over ``[0, 1]``; the thresholds are within ``1 / bins`` of the exact ones.
        device: where the counts live (that of the probabilities passed to :meth:`update`).

    Shape:
        - :attr:`counts`: :math:`(C, \text{bins})`.

    Examples::

        >>> histogram = ConfidenceHistogram(num_classes=3, bins=100)
        >>> histogram.update(torch.softmax(torch.randn(2, 3, 8, 8), dim=1))
        >>> histogram.thresholds(portion=0.5).shape
        torch.Size([3])
    """

    def __init__(self, num_classes: int, bins: int = 1000, device: torch.device | str | None = None) -> None:
        if num_classes < 1 or bins < 1:
            raise ValueError(f"ConfidenceHistogram needs num_classes >= 1 and bins >= 1, got {num_classes}, {bins}.")
        self.num_classes = num_classes
        self.bins = bins
        self.counts = torch.zeros(num_classes, bins, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, probs_or_confidences: torch.Tensor, predictions: torch.Tensor | None = None) -> None:
        """Count a batch; the arguments are those of :func:`class_balanced_thresholds` (without ``num_classes``)."""
        confidences, predictions, _ = _confidences_and_predictions(
            probs_or_confidences, predictions, self.num_classes
        )
        keep = (predictions >= 0) & (predictions < self.num_classes)
        confidences, predictions = confidences[keep].double(), predictions[keep].long()
        bin_index = torch.floor(confidences * self.bins).long().clamp(0, self.bins - 1)
        flat = torch.bincount(predictions * self.bins + bin_index, minlength=self.num_classes * self.bins)
        self.counts += flat.view(self.num_classes, self.bins).to(self.counts.device)

    def thresholds(self, portion: float, max_threshold: float | None = None) -> torch.Tensor:
        """Per-class thresholds from the counts so far; arguments and result as :func:`class_balanced_thresholds`."""
        _check_portion(portion, max_threshold)
        totals = self.counts.sum(dim=1)
        selected = torch.floor(totals.double() * portion).long()
        from_top = self.counts.flip(1).cumsum(1).flip(1)  # from_top[c, i]: pixels of c in bins i and above
        # The bin of the n-th largest confidence: the highest bin whose count from the top reaches n.
        highest = (from_top >= selected[:, None]).sum(dim=1) - 1
        edges = highest.float() / self.bins
        thresholds = torch.where(selected > 0, edges, torch.full_like(edges, float("inf")))
        return _cap(thresholds, max_threshold)

    def reset(self) -> None:
        """Forget every count (before the next round of self-training)."""
        self.counts.zero_()

    def __iadd__(self, other: ConfidenceHistogram) -> ConfidenceHistogram:
        if (other.num_classes, other.bins) != (self.num_classes, self.bins):
            raise ValueError(
                f"Cannot merge a histogram of {other.num_classes} classes x {other.bins} bins into one of "
                f"{self.num_classes} x {self.bins}; build both with the same num_classes and bins."
            )
        self.counts += other.counts.to(self.counts.device)
        return self

    def __repr__(self) -> str:
        pixels = int(self.counts.sum())
        return f"{type(self).__name__}(num_classes={self.num_classes}, bins={self.bins}, pixels={pixels})"


@torch.no_grad()
def pseudo_labels(
    logits: torch.Tensor, thresholds: torch.Tensor, ignore_index: int = 255, *, rule: str = "cbst"
) -> torch.Tensor:
    r"""Hard pseudo-labels with the per-class thresholds; pixels that pass none are set to ``ignore_index``.

    Args:
        logits: the model's unnormalised class scores on target images, classes along dimension 1 (the
            softmax is taken in float32).
        thresholds: one confidence threshold per class, positive (``inf`` turns a class off), e.g. from
            :func:`class_balanced_thresholds` or :meth:`ConfidenceHistogram.thresholds`.
        ignore_index: the label written where no class passes, the one the segmentation loss ignores.
        rule: ``"cbst"`` (the paper and the authors' code): the label is the class with the largest
            :math:`P^{(c)} / k_c`, kept where :math:`P^{(c)} \geq k_c` for that class -- a pixel is ignored
            exactly where :math:`P^{(c)} < k_c` for every class, and a pixel may take a rarer class than its
            argmax. ``"argmax"``: the label is the argmax, kept where its confidence :math:`\geq k_c`.

    Returns:
        int64 labels.

    Shape:
        - logits: :math:`(B, C, H, W)` (any :math:`(B, C, *)`).
        - thresholds: :math:`(C,)`.
        - Output: :math:`(B, H, W)`.

    Examples::

        >>> logits = torch.tensor([[3.0, 1.0], [0.0, 1.0]]).log()[..., None, None]  # probs (0.75, 0.25), (0, 1)
        >>> pseudo_labels(logits, torch.tensor([0.9, 0.2]), ignore_index=255)[:, 0, 0]
        tensor([1, 1])
        >>> pseudo_labels(logits, torch.tensor([0.9, 0.2]), ignore_index=255, rule="argmax")[:, 0, 0]
        tensor([255,   1])
    """
    if rule not in RULES:
        raise ValueError(f"Unknown value '{rule}' for argument rule. Valid values are {RULES}.")
    if logits.dim() < 2 or thresholds.shape != (logits.shape[1],):
        raise ValueError(
            f"thresholds must hold one value per class, shape ({logits.shape[1] if logits.dim() > 1 else '?'},), "
            f"for logits (B, C, H, W) of shape {tuple(logits.shape)}; got {tuple(thresholds.shape)}."
        )
    thresholds = thresholds.to(device=logits.device, dtype=torch.float32)
    if not bool((thresholds > 0).all()):
        raise ValueError(f"Thresholds must be positive (inf turns a class off), got {thresholds.tolist()}.")
    probs = F.softmax(logits.float(), dim=1)
    per_class = thresholds.view(1, -1, *([1] * (logits.dim() - 2)))
    if rule == "cbst":
        labels = (probs / per_class).argmax(dim=1)
    else:
        labels = probs.argmax(dim=1)
    # Compare the probability with the threshold itself (not the ratio with 1): no rounding of a division.
    confidence = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    keep = confidence >= thresholds[labels]
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))


def _confidences_and_predictions(
    values: torch.Tensor, predictions: torch.Tensor | None, num_classes: int | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    if predictions is None:
        if values.dim() < 2:
            raise ValueError(
                f"Without predictions, the first argument must be probabilities (B, C, H, W); got shape "
                f"{tuple(values.shape)}. Pass per-pixel confidences together with their predictions instead."
            )
        if num_classes is not None and values.shape[1] != num_classes:
            raise ValueError(f"Probabilities have {values.shape[1]} classes along dimension 1, expected {num_classes}.")
        confidences, predictions = values.max(dim=1)
        return confidences, predictions, values.shape[1]
    if num_classes is None:
        raise ValueError("With predictions, pass num_classes too (classes never predicted still get a threshold).")
    if values.shape != predictions.shape:
        raise ValueError(
            f"Confidences {tuple(values.shape)} and predictions {tuple(predictions.shape)} must have the same shape; "
            "to pass probabilities (B, C, H, W), leave predictions out."
        )
    return values, predictions, num_classes


def _check_portion(portion: float, max_threshold: float | None) -> None:
    if not 0.0 <= portion <= 1.0:
        raise ValueError(f"portion must be in [0, 1] (the share of each class's pixels kept), got {portion}.")
    if max_threshold is not None and not 0.0 < max_threshold <= 1.0:
        raise ValueError(f"max_threshold must be in (0, 1], or None for no cap; got {max_threshold}.")


def _cap(thresholds: torch.Tensor, max_threshold: float | None) -> torch.Tensor:
    """``min(threshold, cap)`` on the finite thresholds; classes with no selected pixel stay ``inf``."""
    if max_threshold is None:
        return thresholds
    return torch.where(thresholds.isinf(), thresholds, thresholds.clamp(max=max_threshold))
