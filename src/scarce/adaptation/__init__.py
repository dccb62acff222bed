"""Pure building blocks of the domain-adaptation methods after DANN: plain torch functions and modules.

- :mod:`~scarce.adaptation.fda`: FDA (Yang & Soatto, CVPR 2020), the low-frequency amplitude swap, as a function
  and as a paired-batch transform.
- :mod:`~scarce.adaptation.entropy`: ADVENT (Vu et al., CVPR 2019), the weighted self-information map for
  AdvEnt, the normalised entropy map and the MinEnt loss.
- :mod:`~scarce.adaptation.pseudo_labels`: CBST (Zou et al., ECCV 2018), class-balanced confidence thresholds,
  exact or streamed through per-class histograms, and the pseudo-labels they give.

Nothing here imports the rest of scarce (``tests/test_architecture.py``) or Lightning; the LightningModules in
``scarce.lightning_modules`` use these. Errors are builtin exceptions that name the argument.

``scarce.adaptation.pseudo_labels`` is the function; its module is reached by import
(``from scarce.adaptation.pseudo_labels import ConfidenceHistogram``).
"""

from scarce.adaptation.entropy import entropy_loss, entropy_map, self_information
from scarce.adaptation.fda import FDA, fda_source_to_target, low_frequency_mask
from scarce.adaptation.pseudo_labels import ConfidenceHistogram, class_balanced_thresholds, pseudo_labels

__all__ = [
    "FDA",
    "ConfidenceHistogram",
    "class_balanced_thresholds",
    "entropy_loss",
    "entropy_map",
    "fda_source_to_target",
    "low_frequency_mask",
    "pseudo_labels",
    "self_information",
]
