"""Reading checkpoints without running code from them.

A PyTorch checkpoint is a pickle, and unpickling can call any function the file names. Every checkpoint scarce
reads goes through :func:`load_checkpoint`, which uses ``torch.load(..., weights_only=True)``: only tensors, plain
Python values and the classes registered with ``torch.serialization.add_safe_globals`` (e.g.
:class:`~scarce.datamodules.segmentation.SegmentationSource`, kept in hyperparameters) are rebuilt, anything else
is refused before it runs. Resuming a fit goes through Lightning's loader, whose default for local files is the
same ``weights_only=True`` of ``torch.load`` (see docs/reliability.md, "Resuming training").
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from scarce._errors import DataNotFoundError, ScarceError

__all__ = ["load_checkpoint", "network_state_dict", "NETWORK_PREFIX", "UnsafeCheckpointError"]

# Every scarce LightningModule keeps its plain nn.Module as ``self.net``: its weights are the ``net.*`` entries.
NETWORK_PREFIX = "net."


class UnsafeCheckpointError(ScarceError):
    """A checkpoint names code (a global that is neither a tensor nor a registered safe class) to run on loading."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)``, with one-line errors naming the file.

    Raises:
        DataNotFoundError: ``path`` is not a file.
        UnsafeCheckpointError: the file asks to build an object that is not allowed (nothing of it has run).
        ScarceError: the file is not a PyTorch checkpoint at all (truncated, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of advice around the one line that matters: the refused global, or the
        # pickle opcode that is not allowed.
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()
                 and not line.startswith(("Check the documentation", "Please file an issue"))]
        reason = lines[-1] if lines else "not a weights-only pickle"
        if "GLOBAL" in reason or "global" in reason:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: it asks to run code or build objects other than weights ({reason}); "
                "nothing of it ran. Load only checkpoints written by `scarce fit`") from None
        raise ScarceError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ScarceError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


def network_state_dict(checkpoint: object) -> dict | None:
    """The network's weights in a loaded checkpoint: the ``net.*`` entries of a Lightning checkpoint's
    ``state_dict`` with the prefix dropped, or the checkpoint itself when it is a plain state dict; None when it
    holds no state dict at all."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        return None
    if any(key.startswith(NETWORK_PREFIX) for key in state):
        state = {key[len(NETWORK_PREFIX):]: value for key, value in state.items() if key.startswith(NETWORK_PREFIX)}
    return state
