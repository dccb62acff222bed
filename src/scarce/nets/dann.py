"""A DANN network: feature extractor, label classifier and domain classifier; the two of the book, by name.

:class:`DigitsDANN` and :class:`BlobsDANN` are :class:`DANNNetwork` subclasses whose first argument is
``num_classes``, so :class:`~scarce.lightning_modules.dann.DANN` takes either by name (``network: digits``) or as a
``class_path`` with ``init_args`` (``network: {class_path: scarce.nets.dann.BlobsDANN, init_args: {hidden: 32}}``),
and a user's own subclass the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scarce.nets.blob_mlp import BlobClassifier, BlobDomainClassifier, BlobFeatures
from scarce.nets.dann_digits import DigitClassifier, DigitDomainClassifier, DigitFeatures
from scarce.nets.grl import grad_reverse

__all__ = ["BlobsDANN", "DANNNetwork", "DANN_NETWORKS", "DigitsDANN", "dann_digits", "dann_blobs",
           "create_dann_network"]


class DANNNetwork(nn.Module):
    """Features ``G_f``, label classifier ``G_y`` and domain classifier ``G_d`` behind gradient reversal.

    Shape:
        ``forward(x)``: ``x`` of the feature extractor's input shape -> ``(logits (B, C), features (B, F))``.
        ``domain_logits(features, coeff)``: ``(B, F)`` -> ``(B, 2)``.
        ``domain_forward(x, num_labelled)``: -> ``(class logits of x[:num_labelled] (n, C) or None, features (B, F))``,
        the :data:`~scarce.nets.adversarial.AdversarialForward` of :func:`~scarce.nets.adversarial.adversarial_pass`.
    """

    def __init__(self, features: nn.Module, classifier: nn.Module, domain_classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.domain_classifier = domain_classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.classifier(feats), feats

    def domain_logits(self, feats: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        return self.domain_classifier(grad_reverse(feats, coeff))

    def domain_forward(self, x: torch.Tensor, num_labelled: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Class logits of the first ``num_labelled`` rows only (the classifier's batch norm must not see the
        target) and the features of every row, the domain classifier's input."""
        feats = self.features(x)
        return (self.classifier(feats[:num_labelled]) if num_labelled else None), feats


class DigitsDANN(DANNNetwork):
    """The DANN paper's MNIST -> MNIST-M networks (with batch norm), for ``(B, in_channels, 28, 28)`` inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        features = DigitFeatures(in_channels)
        super().__init__(features, DigitClassifier(features.out_features, num_classes),
                         DigitDomainClassifier(features.out_features))


class BlobsDANN(DANNNetwork):
    """Small MLPs for the book's 3-D blobs, for ``(B, 3)`` inputs; ``hidden`` features."""

    def __init__(self, num_classes: int = 2, hidden: int = 16) -> None:
        super().__init__(BlobFeatures(3, hidden), BlobClassifier(hidden, num_classes),
                         BlobDomainClassifier(hidden, hidden))


def dann_digits(*, num_classes: int = 10, in_channels: int = 3) -> DANNNetwork:
    """The DANN paper's MNIST -> MNIST-M networks (:class:`DigitsDANN`)."""
    return DigitsDANN(num_classes, in_channels)


def dann_blobs(*, num_classes: int = 2, hidden: int = 16) -> DANNNetwork:
    """Small MLPs for the book's 3-D blobs (:class:`BlobsDANN`)."""
    return BlobsDANN(num_classes, hidden)


DANN_NETWORKS: dict[str, Callable[..., DANNNetwork]] = {"digits": DigitsDANN, "blobs": BlobsDANN}


def create_dann_network(name: str, **kwargs) -> DANNNetwork:
    if name not in DANN_NETWORKS:
        raise ValueError(f"Unknown DANN network {name!r}; valid values are {sorted(DANN_NETWORKS)}")
    return DANN_NETWORKS[name](**kwargs)
