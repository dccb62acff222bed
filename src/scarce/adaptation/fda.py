r"""FDA: Fourier Domain Adaptation (Yang & Soatto, CVPR 2020, https://arxiv.org/abs/2004.05498).

A source image takes on the "style" of a target image by swapping the low-frequency part of its amplitude
spectrum for the target's while keeping its own phase, which carries the scene's layout. With
:math:`\mathcal{F}` the 2-D discrete Fourier transform of each channel, :math:`A = |\mathcal{F}(x)|` its
amplitude, :math:`P = \arg \mathcal{F}(x)` its phase and :math:`M_\beta` the low-frequency window:

.. math::

    x^{s \to t} = \operatorname{Re} \mathcal{F}^{-1}\!\left[\left(M_\beta \circ A(x^t)
        + (1 - M_\beta) \circ A(x^s)\right) e^{\,i P(x^s)}\right]

The window follows the authors' PyTorch code (``utils.low_freq_mutate`` in github.com/YanchaoYang/FDA), not
the paper's text: with :math:`b = \lfloor \min(H, W)\,\beta \rfloor`, :math:`M_\beta` is 1 on the four
:math:`b \times b` corner blocks of the *un-shifted* spectrum, that is on the frequencies
:math:`u, v \in \{-b, \dots, b - 1\}` -- a centred square of side :math:`2b`, the same in pixels along both axes.
(The paper writes a window proportional to each side, :math:`[-\beta H, \beta H] \times [-\beta W, \beta W]`; the
authors' NumPy variant uses the :math:`2b + 1` frequencies :math:`-b, \dots, b`.) That square swaps
frequency :math:`-b` but not :math:`+b`, so the new spectrum is not exactly Hermitian and its inverse not
exactly real: like the authors' NumPy code we keep the real part (their PyTorch code's ``irfft`` reads half
the spectrum instead; the two agree wherever the window is symmetric). :math:`\beta = 0` leaves the image
unchanged; the paper trains with :math:`\beta \in \{0.01, 0.05, 0.09\}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["FDA", "fda_source_to_target", "low_frequency_mask"]


def low_frequency_mask(height: int, width: int, beta: float, device: torch.device | str | None = None) -> torch.Tensor:
    r"""The amplitudes FDA swaps: the four :math:`b \times b` corner blocks of the un-shifted spectrum.

    Args:
        height: image height :math:`H`.
        width: image width :math:`W`.
        beta: window size, :math:`b = \lfloor \min(H, W)\,\beta \rfloor`; in ``[0, 0.5]``.
        device: where to put the mask.

    Returns:
        A boolean mask, True on the frequencies :math:`u, v \in \{-b, \dots, b - 1\}` (rows and columns
        ``0..b-1`` and ``H-b..H-1`` / ``W-b..W-1``); all False when :math:`b = 0`.

    Shape:
        Output: :math:`(H, W)`.
    """
    _check_beta(beta)
    b = math.floor(min(height, width) * beta)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    low_rows = (rows < b) | (rows >= height - b)
    low_cols = (cols < b) | (cols >= width - b)
    return low_rows[:, None] & low_cols[None, :]  # b = 0: no row or column qualifies


def fda_source_to_target(
    source: torch.Tensor, target: torch.Tensor, beta: float, *, clamp: bool = True
) -> torch.Tensor:
    r"""Give ``source`` the low-frequency amplitude spectrum of ``target``, keeping its phase (module docstring).

    Each channel is transformed on its own (``torch.fft.fft2`` over the last two dimensions). The work is done
    in float32 (float64 for float64 input) and the result returned in the input's dtype, so bfloat16 and
    float16 images work although ``torch.fft`` does not take them.

    Args:
        source: images in ``[0, 1]`` to restyle.
        target: the images whose low frequencies they take: one per source image, or a single one for all.
        beta: window size, :math:`b = \lfloor \min(H, W)\,\beta \rfloor`, in ``[0, 0.5]``; 0 is the identity.
        clamp: clip the result to ``[0, 1]``. Swapping the zero frequency moves the mean brightness and can
            take pixels out of range; the authors' code does not clip (their images are in ``[0, 255]`` and
            mean-subtracted afterwards), so ``clamp=False`` reproduces it.

    Returns:
        The restyled source images, in the dtype of ``source``.

    Shape:
        - source: :math:`(B, C, H, W)` (any leading dimensions work).
        - target: :math:`(B, C, H, W)` or :math:`(1, C, H, W)`.
        - Output: :math:`(B, C, H, W)`.

    Examples::

        >>> source, target = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
        >>> fda_source_to_target(source, target, beta=0.05).shape
        torch.Size([2, 3, 32, 48])
        >>> torch.allclose(fda_source_to_target(source, target, beta=0.0), source, atol=1e-6)
        True
    """
    if source.dim() < 2 or source.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"FDA swaps spectra of images of the same size, but got source {tuple(source.shape)} and target "
            f"{tuple(target.shape)}; resize or crop both to one (H, W) first."
        )
    if not source.is_floating_point() or not target.is_floating_point():
        raise TypeError(
            f"FDA expects float images in [0, 1], got {source.dtype} and {target.dtype}; convert with "
            "`image.float() / 255`."
        )
    try:
        broadcast = torch.broadcast_shapes(target.shape, source.shape) == source.shape
    except RuntimeError:
        broadcast = False
    if not broadcast:
        raise ValueError(
            f"FDA needs one target image per source image or a single one, but got source {tuple(source.shape)} "
            f"and target {tuple(target.shape)}."
        )
    mask = low_frequency_mask(source.shape[-2], source.shape[-1], beta, device=source.device)
    compute = torch.float64 if source.dtype == torch.float64 else torch.float32
    spectrum = torch.fft.fft2(source.to(compute))
    target_amplitude = torch.fft.fft2(target.to(compute)).abs()
    amplitude = torch.where(mask, target_amplitude, spectrum.abs())
    restyled = torch.fft.ifft2(torch.polar(amplitude, spectrum.angle())).real
    if clamp:
        restyled = restyled.clamp(0.0, 1.0)
    return restyled.to(source.dtype)


class FDA(nn.Module):
    r"""FDA as a batch transform: restyle the source images of a paired batch with random target images.

    Each source image is paired with a target image of the same batch drawn uniformly (with replacement) and
    takes its low-frequency amplitude (:func:`fda_source_to_target`); the target images and everything else in
    the batch are left as they are. The input batch is not modified; a new one is returned.

    Args:
        beta: window size, :math:`b = \lfloor \min(H, W)\,\beta \rfloor`, in ``[0, 0.5]``.
        clamp: clip the restyled images to ``[0, 1]``.
        generator: the random source for the pairing (seed it for reproducible pairings); the global one when
            ``None``. Its device decides where the indices are drawn.

    Shape:
        - batch ``["source"]["image"]``: :math:`(B_s, C, H, W)` in ``[0, 1]``.
        - batch ``["target"]["image"]``: :math:`(B_t, C, H, W)`, :math:`B_t \geq 1`.
        - Output: the batch, with ``["source"]["image"]`` restyled, same shape and dtype.

    Examples::

        >>> fda = FDA(beta=0.05, generator=torch.Generator().manual_seed(0))
        >>> batch = {"source": {"image": torch.rand(4, 3, 16, 16), "mask": torch.zeros(4, 16, 16)},
        ...          "target": {"image": torch.rand(4, 3, 16, 16)}}
        >>> out = fda(batch)
        >>> out["source"]["image"].shape, out["source"]["mask"] is batch["source"]["mask"]
        (torch.Size([4, 3, 16, 16]), True)
    """

    def __init__(self, beta: float = 0.01, *, clamp: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_beta(beta)
        self.beta = beta
        self.clamp = clamp
        self.generator = generator

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            source, target = batch["source"]["image"], batch["target"]["image"]
        except (KeyError, TypeError) as error:
            raise KeyError(
                'FDA expects a paired batch {"source": {"image": ...}, "target": {"image": ...}}; '
                f"got keys {list(batch) if isinstance(batch, Mapping) else type(batch).__name__}. "
                "Enable paired target batches in the DataModule (`paired_target=True`)."
            ) from error
        if target.shape[0] == 0:
            raise ValueError("FDA needs at least one target image in the batch, got an empty target batch.")
        index = torch.randint(
            target.shape[0],
            (source.shape[0],),
            generator=self.generator,
            device=self.generator.device if self.generator is not None else "cpu",
        ).to(target.device)
        restyled = fda_source_to_target(source, target[index], self.beta, clamp=self.clamp)
        return {**batch, "source": {**batch["source"], "image": restyled}}

    def extra_repr(self) -> str:
        return f"beta={self.beta}, clamp={self.clamp}"


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 0.5:
        raise ValueError(
            f"FDA's beta must be in [0, 0.5] (the window's half-size as a fraction of min(H, W)), got {beta}; "
            "the paper uses 0.01 to 0.09."
        )
