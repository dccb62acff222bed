"""The one image / mask codec of the shards: PNG encoding, image and mask decoding, to and from numpy arrays.

* :func:`encode_png`: ``(H, W)`` or ``(H, W, 3)`` RGB uint8 / uint16 array -> PNG bytes (OpenCV; the same
  array and compression level always give the same bytes).
* :func:`decode_image`: PNG / JPEG / any format OpenCV or PIL reads -> uint8 ``(H, W, 3)`` RGB. JPEGs go through
  PIL, which can decode them at a reduced DCT scale (``min_size``); the rest through OpenCV (PIL when OpenCV
  cannot read it).
* :func:`decode_pixels`: the pixels as stored, channels and bit depth kept (``(H, W, C)``, uint8 or uint16), as
  ``tf.io.decode_image`` gives them: what a ``tensorflow_datasets`` ``Image`` feature holds.
* :func:`decode_jpeg_window`: one window of a JPEG, decoding only that window (libjpeg-turbo partial decoding,
  as ``tf.io.decode_and_crop_jpeg``), optionally at a reduced DCT scale; :func:`image_size` reads the size from
  the header alone.
* :func:`decode_mask`: a one-channel PNG (8 or 16 bit, or palette: the palette indices are the ids) -> ``(H, W)``
  array of ids, bit depth kept; an RGB PNG whose channels agree (a grey mask saved as RGB) is accepted.

Every error names where the bytes come from (``where``: a feature, a file and record) and how many there were.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from scarce._errors import FeatureError

__all__ = ["WINDOW_DECODE", "EncodedJpeg", "check_image", "decode_image", "decode_jpeg_window", "decode_mask",
           "decode_pixels", "encode_png", "image_size", "is_jpeg", "scaled_window"]

try:  # the compiled crop-window decoder (setup.py); optional: without it whole JPEGs are decoded, then cropped
    from scarce.shards import _jpeg_crop
except ImportError as _err:  # pragma: no cover - exercised by the fallback test through a subprocess
    _jpeg_crop = None
    _WINDOW_DECODE_MISSING = str(_err)

_ALIGNMENT_SLACK = 2 + 2 * 32

#: Whether JPEG windows are decoded alone (``True``) or cut from a whole decoded image (``False``).
WINDOW_DECODE = _jpeg_crop is not None
_told_fallback = False


def encode_png(array: np.ndarray, *, compression: int | None = None) -> bytes:
    """``(H, W)`` or ``(H, W, 3)`` RGB uint8 / uint16 array -> PNG bytes.

    Args:
        array: The pixels; three channels are RGB.
        compression: zlib level 0-9 (OpenCV's default, 1 is fastest); ``None``: OpenCV's default (3).
    """
    if array.ndim == 3:
        array = array[..., ::-1]  # OpenCV writes BGR
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)] if compression is not None else []
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array), params)
    if not ok:
        raise FeatureError(f"PNG encoding failed for an array of shape {array.shape} and dtype {array.dtype}")
    return buf.tobytes()


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG (SOI marker)."""
    return bytes(data[:2]) == b"\xff\xd8"


def _pil(data: bytes, where: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as err:  # its message names the BytesIO object, nothing useful
        raise FeatureError(f"{where}: cannot decode {len(data)} bytes as an image (no image format recognised)") \
            from err
    except Exception as err:  # PIL raises several types for undecodable bytes
        raise FeatureError(f"{where}: cannot decode {len(data)} bytes as an image ({err})") from err


def check_image(data: bytes, *, where: str) -> None:
    """Raise :class:`~scarce._errors.FeatureError` (naming ``where``) unless ``data`` decodes whole as an image.

    A full decode, not ``PIL.Image.verify()``: that reads JPEG headers only, so a cut-off JPEG would pass (and
    fail at training time). PIL raises on a truncated file unless ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set,
    which scarce never sets.
    """
    image = _pil(data, where)
    try:
        image.load()
    except Exception as err:  # OSError, SyntaxError, ValueError, ... by format plugin
        raise FeatureError(f"{where}: not a whole image ({err})") from err
    finally:
        image.close()


def decode_image(data: bytes, *, where: str = "feature 'image'", min_size: Sequence[int] | None = None) -> np.ndarray:
    """Encoded image -> uint8 ``(H, W, 3)`` RGB array.

    Args:
        data: PNG, JPEG or any other format OpenCV or PIL reads (grey and RGBA images become RGB).
        where: Names the bytes in errors, e.g. ``"feature 'image'"`` or ``"FILE: record 'x' image"``.
        min_size: ``(h, w)``: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps it at
            least this large, which is several times faster when the output is smaller.
    """
    if not is_jpeg(data):
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if array is not None:
            return np.ascontiguousarray(array[..., ::-1])
    img = _pil(data, where)  # JPEGs (reduced-scale decoding) and what OpenCV cannot read (GIF)
    if min_size is not None and img.format == "JPEG":
        img.draft("RGB", (int(min_size[1]), int(min_size[0])))
    try:
        return np.array(img.convert("RGB"))
    except Exception as err:
        raise FeatureError(f"{where}: damaged image data ({err})") from err


def decode_pixels(data: bytes, *, channels: int | None = None, where: str = "feature 'image'") -> np.ndarray:
    """Encoded image -> ``(H, W, C)`` array of its stored channels and depth (uint8, or uint16 for 16-bit PNGs).

    JPEGs are decoded with TensorFlow's default settings, so the pixels equal what TFDS gives. Channels are kept
    (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) unless ``channels`` asks for 1, 3 or 4: then grey
    is repeated to RGB, alpha added (opaque) or dropped, as ``tf.io.decode_image(channels=...)`` does for those
    cases; RGB to grey is refused (TensorFlow's weights are its own), naming ``where``.
    """
    if is_jpeg(data):
        array = _decode_jpeg_as_tensorflow(data, channels, where)
    else:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:  # GIF, BMP variants OpenCV does not read: PIL, 8 bit
            img = _pil(data, where)
            try:
                array = np.array(img.convert("RGBA" if "A" in img.getbands() else "RGB"))
            except Exception as err:
                raise FeatureError(f"{where}: damaged image data ({err})") from err
        elif array.ndim == 3 and array.shape[2] == 3:
            array = array[..., ::-1]  # OpenCV decodes BGR
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[..., [2, 1, 0, 3]]
    if array.ndim == 2:
        array = array[..., None]
    have = array.shape[2]
    if channels is not None and channels != have:
        max_value = np.iinfo(array.dtype).max
        if channels == 3 and have in (1, 2):
            array = np.repeat(array[..., :1], 3, axis=2)
        elif channels == 4 and have in (1, 3):
            grey_or_rgb = np.repeat(array, 3, axis=2) if have == 1 else array
            array = np.concatenate([grey_or_rgb, np.full_like(array[..., :1], max_value)], axis=2)
        elif channels == 3 and have == 4:
            array = array[..., :3]
        elif channels == 1 and have == 2:
            array = array[..., :1]
        else:
            raise FeatureError(f"{where}: the image has {have} channel(s), expected {channels}")
    return np.ascontiguousarray(array)


def _decode_jpeg_as_tensorflow(data: bytes, channels: int | None, where: str) -> np.ndarray:
    """A JPEG decoded as ``tf.io.decode_image`` does by default: libjpeg-turbo's fast integer DCT and fancy
    upsampling (simplejpeg's ``fastdct=True, fastupsample=False``; PIL's accurate DCT differs by a few levels)."""
    import simplejpeg

    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        grey = colorspace == "Gray" and channels in (None, 1)
        return simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB", fastdct=True, fastupsample=False)
    except ValueError as err:  # simplejpeg's error for damaged data and colour spaces it does not convert
        img = _pil(data, where)  # CMYK / YCCK JPEGs: PIL converts them
        try:
            return np.array(img.convert("RGB"))
        except Exception:
            raise FeatureError(f"{where}: damaged JPEG data ({err})") from err
def image_size(data: bytes, *, where: str = "feature 'image'") -> tuple[int, int]:
    """``(height, width)`` of an encoded image; for a JPEG from its header alone (no pixel is decoded)."""
    if is_jpeg(data):
        import simplejpeg

        try:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            return int(height), int(width)
        except ValueError as err:
            raise FeatureError(f"{where}: cannot read the JPEG header of {len(data)} bytes ({err})") from err
    return tuple(decode_image(data, where=where).shape[:2])


def scaled_window(size: Sequence[int], window: Sequence[int], scale_denom: int) -> tuple[int, int, int, int]:
    """A ``(top, left, height, width)`` window of a ``size`` = ``(H, W)`` image -> the same window in the image
    decoded at 1 / ``scale_denom`` (libjpeg's ``ceil(H / d) x ceil(W / d)``), rounded to whole pixels."""
    d = int(scale_denom)
    if d == 1:
        return tuple(int(v) for v in window)
    top, left, height, width = window
    hs, ws = -(-int(size[0]) // d), -(-int(size[1]) // d)
    y0, x0 = min(hs - 1, round(top / d)), min(ws - 1, round(left / d))
    y1, x1 = max(y0 + 1, min(hs, round((top + height) / d))), max(x0 + 1, min(ws, round((left + width) / d)))
    return y0, x0, y1 - y0, x1 - x0


def _say_fallback_once() -> None:
    global _told_fallback
    if not _told_fallback:
        _told_fallback = True
        warnings.warn(f"scarce: crop-window JPEG decoding is not available ({_WINDOW_DECODE_MISSING}); decoding "
                      "whole JPEGs and cropping them (slower, same pixels). Build it with `make setup` (needs "
                      "libjpeg62-turbo-dev)", RuntimeWarning, stacklevel=3)


def decode_jpeg_window(data: bytes, window: Sequence[int], *, size: Sequence[int] | None = None,
                       scale_denom: int = 1, fast_dct: bool = True, partial: bool = True,
                       where: str = "feature 'image'") -> np.ndarray:
    """Decode only ``window`` = ``(top, left, height, width)`` of a JPEG -> uint8 ``(height, width, 3)`` RGB (a
    view with a row stride longer than ``width`` when decoded by the extension: ``np.ascontiguousarray`` it for
    code that needs packed rows).

    The same pixels as a whole decode cut to the window (byte for byte: ``tests/test_jpeg_crop.py``), from
    libjpeg-turbo's partial decoding: rows above the window are skipped (entropy-decoded only), rows below are
    never read, and the IDCT, upsampling and colour conversion run on the window's columns only.

    Args:
        data: JPEG bytes (anything else is decoded whole by :func:`decode_image`, then cut).
        window: ``(top, left, height, width)`` in full-resolution pixels.
        size: ``(H, W)`` of the image when known (saves reading the header again).
        scale_denom: 1, 2, 4 or 8: decode at that DCT scale; the window is then mapped by
            :func:`scaled_window` and the result is about ``1 / scale_denom`` of its size.
        fast_dct: libjpeg's fast integer IDCT (TensorFlow's default); ``False``: the accurate one.
        partial: ``False``: decode the whole image and cut it (the fallback's way; for comparisons).
        where: Names the bytes in errors.

    Without the compiled decoder (``WINDOW_DECODE`` false) the whole image is decoded with simplejpeg (the same
    libjpeg-turbo arithmetic) and cut, with a one-time warning.
    """
    if not is_jpeg(data):
        top, left, height, width = (int(v) for v in window)
        return np.ascontiguousarray(decode_image(data, where=where)[top:top + height, left:left + width])
    if size is None:
        size = image_size(data, where=where)
    top, left, height, width = scaled_window(size, window, scale_denom)
    if _jpeg_crop is not None and partial:
        # Rows wide enough for the window, its 1-pixel margins and the iMCU alignment (at most 32 pixels each
        # side): libjpeg writes into them directly and the window is a view (row stride > width).
        out = np.empty((height, width + _ALIGNMENT_SLACK, 3), np.uint8)
        try:
            margin = _jpeg_crop.decode_crop(data, out, left, top, width, scale_denom=int(scale_denom),
                                            fast_dct=fast_dct)
            return out[:, margin:margin + width]
        except ValueError as err:
            # CMYK and other layouts libjpeg cannot turn into RGB take the whole-image path below.
            if "outside" in str(err):
                raise FeatureError(f"{where}: {err}") from err
            if not str(err).startswith("Unsupported color conversion"):
                raise FeatureError(f"{where}: cannot decode {len(data)} bytes as a JPEG ({err})") from err
    elif partial:
        _say_fallback_once()
    import simplejpeg

    kwargs = {}
    if scale_denom > 1:
        kwargs = {"min_height": -(-int(size[0]) // scale_denom), "min_width": -(-int(size[1]) // scale_denom)}
    try:
        whole = simplejpeg.decode_jpeg(data, "RGB", fastdct=fast_dct, strict=False, **kwargs)
    except ValueError:
        whole = decode_image(data, where=where)  # CMYK / YCCK JPEGs: PIL converts them (or names the damage)
        if scale_denom > 1:
            import cv2

            whole = cv2.resize(whole, (-(-int(size[1]) // scale_denom), -(-int(size[0]) // scale_denom)),
                               interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(whole[top:top + height, left:left + width])


class EncodedJpeg:
    """JPEG bytes whose decoding waits until the crop window is known (a training sample's ``image``).

    :class:`scarce.shards.decode.FeatureDecoder` makes these with ``defer_jpeg=True``;
    :class:`scarce.data.transforms.RandomScaleCrop` decodes just its window (:meth:`decode`), and
    :func:`scarce.shards.decode.finalize_sample` decodes any left whole.

    Attributes:
        data: The JPEG bytes.
        size: ``(H, W)``, read from the header.
        where: Names the bytes in errors.
    """

    __slots__ = ("data", "size", "where")

    def __init__(self, data: bytes, *, where: str = "feature 'image'") -> None:
        self.data, self.where = data, where
        self.size = image_size(data, where=where)

    def decode(self, window: Sequence[int] | None = None, *, scale_denom: int = 1) -> np.ndarray:
        """uint8 ``(h, w, 3)`` RGB of ``window`` = ``(top, left, height, width)`` (default: the whole image)."""
        if window is None:
            window = (0, 0, *self.size)
        return decode_jpeg_window(self.data, window, size=self.size, scale_denom=scale_denom, where=self.where)

    def __repr__(self) -> str:
        return f"EncodedJpeg({len(self.data)} bytes, size={self.size})"


def decode_mask(data: bytes, *, where: str = "feature 'mask'") -> np.ndarray:
    """One-channel PNG (mode L, P or I;16) -> ``(H, W)`` array of ids (uint8, or uint16 for 16-bit PNGs).

    A 3-channel PNG is accepted when all channels agree (a grey mask saved as RGB).
    """
    img = _pil(data, where)
    try:
        array = np.array(img)
    except Exception as err:
        raise FeatureError(f"{where}: damaged mask data ({err})") from err
    if array.ndim == 3:
        if not (array == array[..., :1]).all():
            raise FeatureError(f"{where}: mask PNG has {array.shape[-1]} differing channels; expected one "
                               "channel of class ids (mode L, P or I;16)")
        array = np.ascontiguousarray(array[..., 0])
    if array.dtype == np.int32 and img.mode in ("I", "I;16"):  # older Pillow reads 16-bit PNGs as mode I
        array = array.astype(np.uint16)
    return array
