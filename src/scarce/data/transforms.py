"""Joint image + mask augmentation (book 7.1), on torchvision.transforms.v2 and tv_tensors.

Two paths:

* :func:`train_transform` / :func:`eval_transform`: v2 pipelines over a sample dict whose ``image`` is a
  ``tv_tensors.Image`` and ``mask`` a ``tv_tensors.Mask``, so geometry is applied to both (nearest for the
  mask) and colour to the image only: random crop of 0.8-1.0 of the size resized back, horizontal flip,
  brightness +-0.15 (additive, as ``tf.image.random_brightness``), saturation 0.5-1.75. A JPEG image may come
  undecoded (:class:`~scarce.shards.images.EncodedJpeg`): the crop then decodes only its window.
* :class:`JpegCropResize`: the fast classification path used by ``scarce bench pipeline``: the crop window is
  drawn from the JPEG header and decoded alone (libjpeg-turbo partial decoding; at reduced DCT scale when the
  window still covers the output size), then resized and flipped on uint8; float conversion happens per batch
  (or on the GPU).

:class:`scarce.shards.decode.FeatureDecoder` turns a decoded ``tf.train.Example`` into such a sample dict; the
image codec is :mod:`scarce.shards.images`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from scarce._errors import ScarceError
from scarce.shards.decode import finalize_sample, image_tensor
from scarce.shards.images import EncodedJpeg, decode_image, decode_jpeg_window, image_size, is_jpeg

__all__ = [
    "RandomScaleCrop",
    "RandomBrightnessShift",
    "ToFloatSample",
    "train_transform",
    "eval_transform",
    "JpegCropResize",
    "BatchCropResize",
    "decode_jpeg_batch",
    "collate_encoded",
]


# --------------------------------------------------------------------------------------------- v2 transforms


class _CompatTransform(v2.Transform):
    """torchvision >= 0.21 calls ``make_params``/``transform``; older versions ``_get_params``/``_transform``."""

    def _get_params(self, flat_inputs):  # pragma: no cover - old torchvision
        return self.make_params(flat_inputs)

    def _transform(self, inpt, params):  # pragma: no cover - old torchvision
        return self.transform(inpt, params)


class RandomScaleCrop(_CompatTransform):
    """Crop a random window of ``s`` times the height and width (``s`` uniform in ``scale``), resize to ``size``.

    As the book's ``_augmentation_fn``: one factor for both sides (the aspect ratio is kept), then resized
    back to the input size, or to ``size`` when given. Masks are resized with nearest neighbour.

    An undecoded :class:`~scarce.shards.images.EncodedJpeg` image (``FeatureDecoder(defer_jpeg=True)``) is
    decoded only inside the window (the same pixels as a whole decode cut to it), and at a reduced DCT scale
    when the window, scaled down, still covers ``size`` (``reduced_decode``; see :func:`draft_scale`).
    """

    _transformed_types = _CompatTransform._transformed_types + (EncodedJpeg,)

    def __init__(self, scale: tuple[float, float] = (0.8, 1.0), size: Sequence[int] | None = None,
                 reduced_decode: bool = True) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ScarceError(f"RandomScaleCrop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        self.scale = tuple(scale)
        self.size = list(size) if size is not None else None
        self.reduced_decode = reduced_decode

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        sized = [x for x in flat_inputs if isinstance(x, (EncodedJpeg, tv_tensors.Image, tv_tensors.Mask))]
        first = (sized or [x for x in flat_inputs if isinstance(x, torch.Tensor)])[0]
        height, width = first.size if isinstance(first, EncodedJpeg) else v2.functional.get_size(first)
        s = float(torch.empty(1).uniform_(*self.scale))
        h, w = max(1, int(height * s)), max(1, int(width * s))
        top = int(torch.randint(0, height - h + 1, ()))
        left = int(torch.randint(0, width - w + 1, ()))
        return {"top": top, "left": left, "height": h, "width": w, "size": self.size or [height, width]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, EncodedJpeg):
            window = (params["top"], params["left"], params["height"], params["width"])
            denom = draft_scale(inpt.size, window[2:], params["size"]) if self.reduced_decode else 1
            image = image_tensor(inpt.decode(window, scale_denom=denom))
            return F.resize(image, params["size"], antialias=True)
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        return F.resized_crop(inpt, params["top"], params["left"], params["height"], params["width"],
                              params["size"], antialias=True)


class RandomBrightnessShift(_CompatTransform):
    """Add a uniform delta in ``[-max_delta, max_delta]`` to a float image (``tf.image.random_brightness``)."""

    def __init__(self, max_delta: float = 0.15) -> None:
        super().__init__()
        self.max_delta = float(max_delta)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"delta": float(torch.empty(1).uniform_(-self.max_delta, self.max_delta))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if not inpt.is_floating_point():
            raise ScarceError("RandomBrightnessShift needs a float image; put ToFloatSample() before it")
        return tv_tensors.wrap((inpt + params["delta"]).clamp_(0, 1), like=inpt)


class ToFloatSample(torch.nn.Module):
    """uint8 ``Image`` -> float32 in [0, 1]; ``Mask`` -> plain int64 tensor; other entries unchanged."""

    def forward(self, sample: dict) -> dict:
        return finalize_sample(sample)


def train_transform(size: Sequence[int] | None = None, *, flip: bool = True,
                    crop_scale: tuple[float, float] | None = (0.8, 1.0), brightness: float = 0.15,
                    saturation: tuple[float, float] | None = (0.5, 1.75)) -> v2.Compose:
    """The book's joint augmentation, on a sample dict with an ``Image`` (uint8) and optionally a ``Mask``.

    Random crop of ``crop_scale`` of the size resized to ``size`` (or back to the input size), horizontal flip,
    conversion to float, brightness +-``brightness``, saturation in ``saturation``. Returns floats in [0, 1] and
    int64 masks (via :func:`finalize_sample`). The image may also be an undecoded
    :class:`~scarce.shards.images.EncodedJpeg` when ``crop_scale`` is set: the crop then decodes only its window.

    The flip comes after the crop (the book flips first): the crop's position is uniform, so flip-then-crop and
    crop-then-flip give the same distribution of outputs, and flipping the smaller resized image is cheaper (and
    possible at all before decoding).
    """
    steps: list[Callable] = []
    if crop_scale is not None:
        steps.append(RandomScaleCrop(crop_scale, size))
    elif size is not None:
        steps.append(v2.Resize(list(size), antialias=True))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
    if brightness:
        steps.append(RandomBrightnessShift(brightness))
    if saturation is not None:
        steps.append(v2.ColorJitter(saturation=saturation))
    steps.append(ToFloatSample())
    return v2.Compose(steps)


def eval_transform(size: Sequence[int] | None = None) -> v2.Compose:
    """Resize (when ``size`` is given) and convert to float, for validation and test."""
    steps: list[Callable] = []
    if size is not None:
        steps.append(v2.Resize(list(size), antialias=True))
    steps.append(ToFloatSample())
    return v2.Compose(steps)


# --------------------------------------------------------------------------------------------- fast JPEG path


def draft_scale(src_hw: Sequence[int], crop_hw: Sequence[int], out_hw: Sequence[int]) -> int:
    """The largest DCT scale denominator (1, 2, 4, 8) that keeps the crop at least as large as the output."""
    for denom in (8, 4, 2):
        if crop_hw[0] / denom >= out_hw[0] and crop_hw[1] / denom >= out_hw[1]:
            return denom
    return 1


class JpegCropResize:
    """Decode a random crop window of JPEG bytes, resize it to ``size``, flip: uint8 ``(h, w, 3)`` RGB.

    The fast path of ``scarce bench pipeline``. The crop (``scale`` of each side, uniform position) is drawn
    from the JPEG header, then only that window is decoded (:func:`scarce.shards.images.decode_jpeg_window`,
    libjpeg-turbo partial decoding as ``tf.io.decode_and_crop_jpeg``: the same pixels as a whole decode cut to
    the window), with the fast integer IDCT that ``tf.io.decode_jpeg`` also uses by default, and at a reduced
    DCT scale (1/2, 1/4, 1/8) when the window, scaled down, still covers ``size`` (``reduced_decode``). OpenCV
    resizes (SIMD bilinear) and flips into the output. All of it releases the GIL, so a thread pool scales.
    Random numbers come from ``random`` (torch seeds it per DataLoader worker).

    Args:
        size: Output ``(h, w)``.
        scale: Crop side fraction range (one factor for both sides, as the book).
        flip_p: Probability of a horizontal flip.
        reduced_decode: Allow DCT-scaled decoding (only when no detail the output can hold is lost).
        antialias: Area-average when shrinking a lot (slower); ``False`` is plain bilinear, as
            ``tf.image.resize``.
        fast_dct: libjpeg's fast integer IDCT (TensorFlow's default); ``False``: the accurate one.
        window_decode: Decode only the crop window; ``False``: decode the whole image and cut it (the same
            pixels, slower: for comparisons).

    Call it with ``out=`` (an ``(h, w, 3)`` uint8 array, e.g. one slot of a channels-last batch) to write
    in place; otherwise a new array is returned. :meth:`to_tensor` gives the ``(3, h, w)`` tensor.
    """

    def __init__(self, size: Sequence[int] = (224, 224), scale: tuple[float, float] = (0.8, 1.0),
                 flip_p: float = 0.5, reduced_decode: bool = True, antialias: bool = False,
                 fast_dct: bool = True, window_decode: bool = True) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.scale = scale
        self.window_decode = window_decode
        self.flip_p = flip_p
        self.reduced_decode = reduced_decode
        self.antialias = antialias
        self.fast_dct = fast_dct

    def window(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random ``(top, left, h, w)`` crop of an ``height x width`` image (``scale`` of each side)."""
        s = random.uniform(*self.scale)
        ch, cw = max(1, int(height * s)), max(1, int(width * s))
        return random.randint(0, height - ch), random.randint(0, width - cw), ch, cw

    def __call__(self, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        import cv2

        if is_jpeg(data):
            height, width = image_size(data)
            window = self.window(height, width)
            denom = draft_scale((height, width), window[2:], self.size) if self.reduced_decode else 1
            crop = decode_jpeg_window(data, window, size=(height, width), scale_denom=denom, fast_dct=self.fast_dct,
                                      partial=self.window_decode)
        else:  # PNG and the rest: no partial decoding
            whole = decode_image(data)
            top, left, ch, cw = self.window(*whole.shape[:2])
            crop = whole[top:top + ch, left:left + cw]
        shrink = crop.shape[1] > self.size[1] * 1.5 or crop.shape[0] > self.size[0] * 1.5
        interp = cv2.INTER_AREA if self.antialias and shrink else cv2.INTER_LINEAR
        small = cv2.resize(crop, (self.size[1], self.size[0]), interpolation=interp)
        flip = random.random() < self.flip_p
        if out is None:
            return cv2.flip(small, 1) if flip else small
        if flip:
            cv2.flip(small, 1, dst=out)
        else:
            np.copyto(out, small)
        return out

    def to_tensor(self, data: bytes) -> torch.Tensor:
        """uint8 ``(3, h, w)``."""
        return torch.from_numpy(self(data)).permute(2, 0, 1)


# --------------------------------------------------------------------------------------------- GPU path


def collate_encoded(keys: Sequence[str] = ("image",)) -> Callable[[list[dict]], dict]:
    """A collate function that keeps ``keys`` (encoded images of varying length) as lists of tensors."""
    from torch.utils.data import default_collate

    def collate(samples: list[dict]) -> dict:
        rest = default_collate([{k: v for k, v in s.items() if k not in keys} for s in samples])
        rest.update({k: [s[k] for s in samples] for k in keys})
        return rest

    return collate


def decode_jpeg_batch(encoded: Sequence[torch.Tensor], device: str | torch.device = "cuda") -> list[torch.Tensor]:
    """Decode a list of JPEGs (uint8 1-D CPU tensors) at once; on CUDA with nvJPEG.

    Returns uint8 ``(3, H, W)`` tensors on ``device``.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    if device.type == "cuda":
        return decode_jpeg(list(encoded), mode=ImageReadMode.RGB, device=device)
    return [decode_jpeg(e, mode=ImageReadMode.RGB) for e in encoded]


class BatchCropResize(torch.nn.Module):
    """Per image random crop of ``scale`` of the size, resize to ``size``, random flip; stack; float [0, 1].

    Runs where the images are (the GPU after :func:`decode_jpeg_batch`): the GPU side of the book's
    augmentation. Masks, when given, get the same crop and flip, resized with nearest neighbour.

    Args:
        size: Output ``(h, w)``.
        scale: Crop side fraction range.
        flip_p: Probability of a horizontal flip.
        train: ``False``: resize only.

    Shape: a list of ``(3, H_i, W_i)`` uint8 -> ``(B, 3, h, w)`` float32; with ``masks``, a list of ``(H_i, W_i)``
    ids -> also ``(B, h, w)`` int64, returned as ``(images, masks)``.
    """

    def __init__(self, size: Sequence[int], scale: tuple[float, float] = (0.8, 1.0), flip_p: float = 0.5,
                 train: bool = True) -> None:
        super().__init__()
        self.size, self.scale, self.flip_p, self.train_mode = list(size), scale, flip_p, train

    def forward(self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out, out_masks = [], []
        for k, img in enumerate(images):
            _, height, width = img.shape
            mask = masks[k].reshape(height, width) if masks is not None else None
            if self.train_mode:
                s = random.uniform(*self.scale)
                ch, cw = max(1, int(height * s)), max(1, int(width * s))
                top, left = random.randint(0, height - ch), random.randint(0, width - cw)
                img = img[:, top:top + ch, left:left + cw]
                mask = mask[top:top + ch, left:left + cw] if mask is not None else None
            x = torch.nn.functional.interpolate(img[None].float(), size=self.size, mode="bilinear",
                                                antialias=True, align_corners=False)[0]
            if mask is not None:
                # Nearest on the ids (as float: exact for ids below 2**24), never blended.
                mask = torch.nn.functional.interpolate(mask[None, None].float(), size=self.size,
                                                       mode="nearest-exact")[0, 0].long()
            if self.train_mode and random.random() < self.flip_p:
                x = x.flip(-1)
                mask = mask.flip(-1) if mask is not None else None
            out.append(x)
            out_masks.append(mask)
        images_out = torch.stack(out).div_(255).clamp_(0, 1)
        return images_out if masks is None else (images_out, torch.stack(out_masks))
