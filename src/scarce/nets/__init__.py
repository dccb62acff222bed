"""Plain ``nn.Module`` networks; the LightningModules in ``scarce.lightning_modules`` wrap them.

Nothing here imports the rest of scarce (``tests/test_architecture.py``); errors are builtin exceptions
(``ValueError``, ``FileNotFoundError``) that name the argument. The registries and builders that pick a network
by name stay in their modules: ``scarce.nets.dann`` (``DANN_NETWORKS``, ``create_dann_network``) and
``scarce.nets.domain_heads`` (``DOMAIN_HEADS``, ``create_domain_head``); the builder ``dann_digits`` would shadow
the submodule ``scarce.nets.dann_digits`` here.
"""

from scarce.nets.blob_mlp import BlobClassifier, BlobDomainClassifier, BlobFeatures
from scarce.nets.dann import DANNNetwork
from scarce.nets.dann_digits import DigitClassifier, DigitDomainClassifier, DigitFeatures
from scarce.nets.dcgan import Discriminator, Generator
from scarce.nets.domain_heads import OutputDomainDiscriminator, Pool5DomainClassifier
from scarce.nets.fcn8s import FCN8s
from scarce.nets.grl import GradientReversal, grad_reverse
from scarce.nets.mnist_classifier import MNISTClassifier
from scarce.nets.vae import ConvDecoder, ConvEncoder, ConvVAE

__all__ = [
    "BlobClassifier",
    "BlobDomainClassifier",
    "BlobFeatures",
    "ConvDecoder",
    "ConvEncoder",
    "ConvVAE",
    "DANNNetwork",
    "DigitClassifier",
    "DigitDomainClassifier",
    "DigitFeatures",
    "Discriminator",
    "FCN8s",
    "Generator",
    "GradientReversal",
    "MNISTClassifier",
    "OutputDomainDiscriminator",
    "Pool5DomainClassifier",
    "grad_reverse",
]
