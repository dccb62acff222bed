"""Crop-window JPEG decoding: the same pixels as a whole decode cut to the window, its fallback, the reduced-scale
tolerance, the joint image + mask crop, and a short run of benchmarks/pipeline_vs_tfdata.py."""

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image
from skimage import data as photos
from torchvision import tv_tensors

from scarce._errors import FeatureError
from scarce.data.transforms import JpegCropResize, RandomScaleCrop, draft_scale, train_transform
from scarce.shards import images
from scarce.shards.decode import FeatureDecoder, finalize_sample
from scarce.shards.images import EncodedJpeg, decode_jpeg_window, scaled_window

ROOT = Path(__file__).resolve().parents[1]
needs_window_decode = pytest.mark.skipif(not images.WINDOW_DECODE, reason="scarce.shards._jpeg_crop not built")


def _jpeg(arr: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", **{"quality": 90, **options})
    return buf.getvalue()


# Real photographs (shipped with scikit-image) in every layout libjpeg treats differently: chroma subsampling
# 4:4:4 / 4:2:2 / 4:2:0 (the "fancy" upsampling that makes partial-width decodes differ at their edges),
# progressive scans, grey, and sizes that are not multiples of the 16-pixel iMCU.
PHOTOS = {
    "420": _jpeg(photos.chelsea(), subsampling=2),
    "422": _jpeg(photos.coffee()[:397, :591], subsampling=1),
    "444": _jpeg(photos.astronaut()[:333, :517], subsampling=0),
    "420-progressive": _jpeg(photos.coffee()[3:, 5:], subsampling=2, progressive=True),
    "grey": _jpeg(photos.camera()[:301, :459]),
}


def test_window_decoder_is_built_where_libjpeg_headers_are():
    """`make setup` builds the extension; its build is optional, so a broken one would only show as skips."""
    if not Path("/usr/include/jpeglib.h").exists():
        pytest.skip("no libjpeg-turbo headers: scarce decodes whole JPEGs (the fallback test covers it)")
    assert images.WINDOW_DECODE, ("scarce.shards._jpeg_crop is not built: run `make setup`, or "
                                  "`python setup.py build_ext --inplace` in a work tree used through PYTHONPATH")


def _windows(height: int, width: int, n: int, rng: random.Random):
    yield 0, 0, height, width
    yield height - 1, width - 1, 1, 1
    for _ in range(n):
        h, w = rng.randint(1, height), rng.randint(1, width)
        yield rng.randint(0, height - h), rng.randint(0, width - w), h, w


@needs_window_decode
@pytest.mark.parametrize("name", list(PHOTOS))
@pytest.mark.parametrize("fast_dct", [True, False])
def test_window_equals_whole_decode_cut(name, fast_dct):
    data = PHOTOS[name]
    whole = simplejpeg.decode_jpeg(data, "RGB", fastdct=fast_dct, strict=False)  # the bundled libjpeg-turbo
    height, width = whole.shape[:2]
    for top, left, h, w in _windows(height, width, 60, random.Random(name)):
        window = decode_jpeg_window(data, (top, left, h, w), fast_dct=fast_dct)
        assert np.array_equal(window, whole[top:top + h, left:left + w]), (name, top, left, h, w)


@needs_window_decode
def test_window_at_reduced_scale_is_the_scaled_whole_decode_cut():
    data = PHOTOS["420"]
    for denom in (2, 4, 8):
        whole = simplejpeg.decode_jpeg(data, "RGB", fastdct=True, min_height=-(-300 // denom),
                                       min_width=-(-451 // denom))
        for window in _windows(300, 451, 10, random.Random(denom)):
            top, left, h, w = scaled_window((300, 451), window, denom)
            got = decode_jpeg_window(data, window, scale_denom=denom)
            assert np.array_equal(got, whole[top:top + h, left:left + w])


def test_reduced_scale_keeps_the_output_distribution():
    """Reduced DCT scale only when the window is resized down by >= 2x. The outputs then differ from the
    full-scale path's by under 4 grey levels per pixel on average over windows (1.6 %: libjpeg's scaled IDCT
    averages like a box filter where the antialiased resize uses a triangle; under 6 for any one window), and
    their mean brightness by under 1 level (0.4 %), 40x less than the +-0.15 brightness jitter of the same
    augmentation."""
    data = _jpeg(np.asarray(Image.fromarray(photos.coffee()).resize((1200, 800))), subsampling=2)
    crop = RandomScaleCrop((0.8, 1.0), size=(160, 240))
    assert draft_scale((800, 1200), (640, 960), (160, 240)) == 4
    assert draft_scale((800, 1200), (300, 960), (160, 240)) == 1  # never below the output size
    diffs, means = [], []
    for seed in range(12):
        torch.manual_seed(seed)  # the windows: fixed, whatever ran before in this process
        params = crop.make_params([EncodedJpeg(data)])
        fast = crop.transform(EncodedJpeg(data), params).float()
        exact = crop.transform(tv_tensors.Image(torch.from_numpy(
            simplejpeg.decode_jpeg(data, "RGB", fastdct=True)).permute(2, 0, 1)), params).float()
        diffs.append(float((fast - exact).abs().mean()))
        means.append(float(fast.mean() - exact.mean()))
    assert np.mean(diffs) < 4.0 and max(diffs) < 6.0 and abs(float(np.mean(means))) < 1.0, (diffs, means)


@needs_window_decode
def test_deferred_jpeg_gets_the_same_crop_as_its_mask():
    rng = np.random.default_rng(0)
    image = photos.chelsea()
    mask = rng.integers(0, 4, image.shape[:2], dtype=np.uint8)
    data = _jpeg(image, subsampling=2)
    decoded = simplejpeg.decode_jpeg(data, "RGB", fastdct=True)
    pipeline = train_transform(size=(160, 240), brightness=0.1, saturation=(0.5, 1.5))  # full scale: exact
    for seed in range(6):
        torch.manual_seed(seed)
        lazy = pipeline({"image": EncodedJpeg(data), "mask": tv_tensors.Mask(torch.from_numpy(mask)),
                         "label": torch.tensor(3)})
        torch.manual_seed(seed)
        eager = pipeline({"image": tv_tensors.Image(torch.from_numpy(decoded).permute(2, 0, 1)),
                          "mask": tv_tensors.Mask(torch.from_numpy(mask)), "label": torch.tensor(3)})
        assert torch.equal(lazy["image"], eager["image"]) and torch.equal(lazy["mask"], eager["mask"])
        assert lazy["image"].shape == (3, 160, 240) and lazy["mask"].shape == (160, 240) and int(lazy["label"]) == 3


def test_feature_decoder_defers_only_jpeg_images():
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    example = {"image": [PHOTOS["420"]], "mask": [png.getvalue()], "label": [1]}
    sample = FeatureDecoder({"image": "jpeg", "mask": "png", "label": "int"}, defer_jpeg=True)(example)
    assert isinstance(sample["image"], EncodedJpeg) and sample["image"].size == (300, 451)
    assert isinstance(sample["mask"], tv_tensors.Mask)
    out = finalize_sample(sample)  # left undecoded: decoded whole
    assert out["image"].shape == (3, 300, 451) and out["image"].dtype == torch.float32


def test_damaged_jpeg_names_the_feature():
    data = PHOTOS["420"]
    with pytest.raises(FeatureError, match="feature 'image'"):
        decode_jpeg_window(data[:2] + b"\x00" * 40, (0, 0, 10, 10), size=(300, 451))
    with pytest.raises(FeatureError, match="feature 'photo'"):
        EncodedJpeg(b"\xff\xd8 not a jpeg", where="feature 'photo'")


def test_fallback_without_the_extension_warns_once_and_gives_the_same_pixels(tmp_path):
    code = r"""
import sys, warnings
sys.modules["scarce.shards._jpeg_crop"] = None  # the import fails, as when the extension was not built
import numpy as np, simplejpeg
from scarce.shards import images
data = open(sys.argv[1], "rb").read()
assert not images.WINDOW_DECODE
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = images.decode_jpeg_window(data, (10, 20, 100, 200))
    b = images.decode_jpeg_window(data, (0, 0, 50, 60))
    images.EncodedJpeg(data).decode((5, 5, 20, 30))
whole = simplejpeg.decode_jpeg(data, "RGB", fastdct=True)
assert np.array_equal(a, whole[10:110, 20:220]) and np.array_equal(b, whole[:50, :60])
told = [w for w in caught if "crop-window JPEG decoding is not available" in str(w.message)]
assert len(told) == 1, [str(w.message) for w in caught]
print("fallback ok")
"""
    path = tmp_path / "photo.jpg"
    path.write_bytes(PHOTOS["420"])
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0 and "fallback ok" in proc.stdout, proc.stderr[-2000:]


def test_jpeg_crop_resize_window_and_whole_decode_agree():
    data = PHOTOS["422"]
    for flip_p in (0.0, 1.0):
        random.seed(5)
        window = JpegCropResize((64, 96), flip_p=flip_p, window_decode=True)(data)
        random.seed(5)
        whole = JpegCropResize((64, 96), flip_p=flip_p, window_decode=False)(data)
        assert window.shape == (64, 96, 3) and np.array_equal(window, whole)


def test_benchmark_short_run_passes_its_output_check(tmp_path):
    """Both sides (tf.data when .venv-tf exists), a few hundred images: the script's output check must pass."""
    rows = "tf.data expert,scarce,decode limit (window)"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pipeline_vs_tfdata.py"), "--data",
                           str(tmp_path / "jpeg"), "--records", "96", "--shards", "2", "--images", "96", "--rounds",
                           "1", "--skip-memory", "--rows", rows], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "output check: passed" in proc.stdout
    assert "scarce as a share of decode limit (window)" in proc.stdout
    if (ROOT / ".venv-tf" / "bin" / "python").exists():
        assert "tf.data expert: shapes ['[224, 224, 3]']" in proc.stdout
        assert proc.stdout.strip().splitlines()[-1].startswith("speedup: ")
