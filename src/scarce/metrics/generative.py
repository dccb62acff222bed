"""Offline FID, KID and Inception-Score-style metrics in the feature space of scarce's MNIST classifier.

The Inception network that FID / KID / IS normally use must be downloaded and was trained on ImageNet
photographs; here a small classifier trained by scarce on MNIST (``configs/mnist_classifier.yaml``) takes its
place: its penultimate features (128-D) feed torchmetrics' ``FrechetInceptionDistance`` and
``KernelInceptionDistance`` through their ``feature=`` argument, and its class probabilities give the
Inception Score, ``exp(E_x KL(p(y|x) || p(y)))`` (10 at best: confident and balanced over the 10 digits).
Figures are comparable with each other, not with Inception-based figures from papers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from scarce._errors import DataNotFoundError, ScarceError
from scarce.checkpoints import load_checkpoint, network_state_dict
from scarce.nets.mnist_classifier import MNISTClassifier

__all__ = ["ClassifierFeatures", "ClassifierLogits", "GenerativeScores", "load_classifier", "feature_scale",
           "DEFAULT_CLASSIFIER_CKPT"]

DEFAULT_CLASSIFIER_CKPT = Path("runs/mnist_classifier/checkpoints/best.ckpt")


class ClassifierFeatures(nn.Module):
    """Penultimate features of an MNIST classifier, divided by ``scale``, as torchmetrics' ``feature=`` extractor.

    KID's kernel ``(x.y / d + 1)^3`` assumes features of order 1 (as Inception's pool features are); the
    classifier's ReLU features are an order of magnitude larger, which makes the cube explode and KID noisy.
    ``scale`` (see :func:`feature_scale`) fixes the unit once per classifier, the same for every model scored.

    Shape:
        ``(B, 1, 28, 28)`` float in [0, 1] -> ``(B, num_features)``
    """

    def __init__(self, classifier: MNISTClassifier, scale: float = 1.0) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = classifier.num_features
        self.scale = float(scale)

    def train(self, mode: bool = True) -> ClassifierFeatures:
        # torchmetrics moves and toggles the extractor; the classifier must stay in eval mode (BN, dropout).
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.forward_features(images.float()) / self.scale


class ClassifierLogits(ClassifierFeatures):
    """Class logits of an MNIST classifier (``InceptionScore`` applies the softmax).

    Shape:
        ``(B, 1, 28, 28)`` float in [0, 1] -> ``(B, 10)``
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images.float())


@torch.no_grad()
def feature_scale(classifier: MNISTClassifier, images: torch.Tensor, batch_size: int = 500) -> float:
    """Root mean square of the classifier's features over ``images`` ``(N, 1, 28, 28)`` (real training digits)."""
    classifier = classifier.eval()
    total, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        features = classifier.forward_features(images[start:start + batch_size].float()).double()
        total += float(features.pow(2).sum())
        count += features.numel()
    return (total / count) ** 0.5


def load_classifier(path: str | Path = DEFAULT_CLASSIFIER_CKPT, map_location: str = "cpu") -> MNISTClassifier:
    """The :class:`MNISTClassifier` inside a checkpoint written by ``scarce fit --config configs/mnist_classifier.yaml``.

    Only the weights are read (``torch.load(..., weights_only=True)``): the LightningModule's ``net.*`` entries, or
    a plain ``MNISTClassifier`` state dict. The network's sizes are read from the weights' shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"MNIST classifier checkpoint {path} not found; train it with "
            "`scarce fit --config configs/mnist_classifier.yaml` or pass `--classifier PATH`")
    state = network_state_dict(load_checkpoint(path, map_location=map_location)) or {}
    needed = ("body.0.0.weight", "body.1.0.weight", "fc.0.weight", "head.1.weight")
    if any(key not in state for key in needed):
        raise ScarceError(f"{path} is not an MNIST classifier checkpoint (no {', '.join(needed)} weights); train one "
                          "with `scarce fit --config configs/mnist_classifier.yaml` or pass `--classifier PATH`")
    channels = (state["body.0.0.weight"].shape[0], state["body.1.0.weight"].shape[0])
    classifier = MNISTClassifier(channels=channels, num_features=state["fc.0.weight"].shape[0],
                                 num_classes=state["head.1.weight"].shape[0])
    classifier.load_state_dict(state)
    return classifier.eval()


class GenerativeScores(nn.Module):
    """FID, KID and IS of generated images against real ones, in the classifier's feature space.

    Args:
        classifier: A trained :class:`MNISTClassifier`.
        kid_subset_size: Images per KID subset (at most the smaller of the two sets).
        kid_subsets: KID subsets.
        is_splits: Inception Score splits.
        scale: Unit of the FID / KID features (:func:`feature_scale` of real training images; 1 = raw).

    Example::

        scores = GenerativeScores(load_classifier())
        scores.update(real_images, real=True)       # (B, 1, 28, 28) in [0, 1], any number of calls
        scores.update(fake_images, real=False)
        scores.compute()  # {"fid": ..., "kid_mean": ..., "kid_std": ..., "is_mean": ..., "is_std": ...}
    """

    def __init__(self, classifier: MNISTClassifier, kid_subset_size: int = 1000, kid_subsets: int = 100,
                 is_splits: int = 10, scale: float = 1.0) -> None:
        super().__init__()
        self.fid = FrechetInceptionDistance(feature=ClassifierFeatures(classifier, scale))
        self.kid = KernelInceptionDistance(feature=ClassifierFeatures(classifier, scale), subset_size=kid_subset_size,
                                           subsets=kid_subsets)
        self.inception = InceptionScore(feature=ClassifierLogits(classifier), splits=is_splits)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch ``(B, 1, 28, 28)`` in [0, 1]; the Inception Score is computed on the ``real=False`` set."""
        self.fid.update(images, real=real)
        self.kid.update(images, real=real)
        if not real:
            self.inception.update(images)

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        kid_mean, kid_std = self.kid.compute()
        is_mean, is_std = self.inception.compute()
        return {"fid": float(self.fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
                "is_mean": float(is_mean), "is_std": float(is_std)}

    def reset(self) -> None:
        for metric in (self.fid, self.kid, self.inception):
            metric.reset()
