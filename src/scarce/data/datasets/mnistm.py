"""MNIST-M: MNIST digits blended over crops of colour photos (Ganin et al., DANN, JMLR 2016).

The recipe: for each digit, take a random 28x28 crop of a random colour photo and output
``|crop - digit|`` per channel, so the digit shows as an inverted-colour stroke over the texture. The paper
used BSDS500 photos; offline, scarce uses the colour photos that scikit-image and scikit-learn ship.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scarce._errors import DataNotFoundError, ScarceError
from scarce._progress import progress
from scarce.data.datasets._utils import verify_str_arg
from scarce.data.datasets.mnist import MNIST, SPLITS
from scarce.shards.samples import SampleDataset

__all__ = ["MNISTM", "blend_mnistm", "builtin_photos", "load_photos", "default_cache_dir"]

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Colour photos bundled with scikit-image / scikit-learn (no download). "cat" is "chelsea" again, so it is left out.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
# Each split draws from its own stream so that train/val/test never share a crop sequence.
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCARCE_CACHE", Path.home() / ".cache" / "scarce"))


@functools.lru_cache(maxsize=1)
def builtin_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """The colour photos shipped inside scikit-image and scikit-learn, as ``(name, uint8 HxWx3)``.

    Decoded once per process (the arrays are made read-only, as they are shared).
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            photos.append((f"skimage:{name}", np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)))
        except Exception as err:  # an skimage release may drop or stop bundling an image; the rest suffice
            log.warning("skipping scikit-image photo %s: %s", name, err)
    bunch = load_sample_images()
    photos += [(f"sklearn:{Path(f).name}", np.asarray(img, dtype=np.uint8)) for f, img in zip(bunch.filenames, bunch.images)]
    if len(photos) < 2:
        raise ScarceError("fewer than 2 built-in colour photos could be loaded from scikit-image / scikit-learn; "
                          "pass photos_dir= a folder of colour photos (BSDS500 gives the paper's recipe)")
    for _, arr in photos:
        arr.flags.writeable = False
    return tuple(photos)


def load_photos(folder: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every image under ``folder`` (recursively), as RGB uint8 arrays, in sorted path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"photos_dir {folder} is not a folder; expected a folder of colour photos "
                                f"({', '.join(PHOTO_EXTENSIONS)}), e.g. BSDS500/data/images/train/*.jpg")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS)
    if not paths:
        raise DataNotFoundError(f"no photos ({', '.join(PHOTO_EXTENSIONS)}) found under {folder}")
    photos = []
    for p in paths:
        try:
            with Image.open(p) as im:
                photos.append((str(p.relative_to(folder)), np.asarray(im.convert("RGB"), dtype=np.uint8)))
        except OSError as err:
            raise ScarceError(f"{p}: cannot read photo ({err})") from err
    return photos


def blend_mnistm(digits: np.ndarray, photos: Sequence[np.ndarray], rng: np.random.Generator,
                 desc: str | None = None) -> np.ndarray:
    """Blend grey digits ``(N, 28, 28)`` uint8 into colour ``(N, 28, 28, 3)`` uint8: ``|crop - digit|``.

    With ``desc``, progress goes to stderr under that name (:func:`scarce._progress.progress`)."""
    n, h, w = digits.shape
    for i, photo in enumerate(photos):
        if photo.shape[0] < h or photo.shape[1] < w:
            raise ScarceError(f"photo {i} is {photo.shape[:2]}, smaller than the {h}x{w} crop MNIST-M needs")
    which = rng.integers(0, len(photos), size=n)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in progress(range(n), desc=desc, unit="images") if desc is not None else range(n):
        photo = photos[which[i]]
        y = rng.integers(0, photo.shape[0] - h + 1)
        x = rng.integers(0, photo.shape[1] - w + 1)
        crop = photo[y:y + h, x:x + w].astype(np.int16)
        out[i] = np.abs(crop - digits[i, :, :, None].astype(np.int16)).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=4)
def _builtin_fingerprint() -> str:
    return _photos_fingerprint(builtin_photos())


def _photos_fingerprint(photos: Sequence[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for name, arr in photos:
        h.update(name.encode())
        h.update(hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest())
    return h.hexdigest()[:16]


class MNISTM(SampleDataset):
    """MNIST-M, built deterministically from :class:`~scarce.data.datasets.MNIST` and cached on disk.

    Built on first use and cached as ``{cache_dir}/mnistm/mnistm-{split}-{key}.npz`` with a JSON sidecar
    holding the sha256 of the arrays; a cache that fails to load or to match is rebuilt (with a warning).
    The key covers the recipe version, the seed, the MNIST source and the photos, so changing any of them
    builds a new cache instead of reusing a stale one.

    Args:
        root: MNIST IDX folder (see :class:`~scarce.data.datasets.MNIST`); ``None`` uses the offline copy.
        split: ``"train"``, ``"val"`` or ``"test"`` (the MNIST split it is built from).
        transform: Applied to the image.
        target_transform: Applied to the label.
        transforms: Applied to the sample dict (instead of the two above).
        photos_dir: A folder of colour photos to crop from, e.g. ``BSDS500/data/images/train`` for the paper's
            exact recipe. ``None`` uses the photos shipped with scikit-image and scikit-learn.
        seed: Seed of the crop choice; the same seed gives the same bytes on any machine.
        cache_dir: Where to cache (default ``$SCARCE_CACHE`` or ``~/.cache/scarce``).
        limit: Keep only the first ``limit`` digits (builds and caches only those).

    A sample is ``{"image": float32 (3, 28, 28) in [0, 1], "label": int64}``; ``self.data`` is uint8
    ``(N, 28, 28, 3)``.
    """

    classes = MNIST.classes

    def __init__(self, root: str | Path | None = None, split: str = "train", transform: Callable | None = None,
                 target_transform: Callable | None = None, transforms: Callable[[dict], dict] | None = None,
                 photos_dir: str | Path | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                 limit: int | None = None) -> None:
        super().__init__(root, verify_str_arg(split, "split", SPLITS), transforms, transform, target_transform)
        self.photos_dir, self.seed = photos_dir, seed
        mnist = MNIST(root, split=split, limit=limit)
        photos = load_photos(photos_dir) if photos_dir is not None else builtin_photos()
        key_fields = {
            "recipe": RECIPE_VERSION, "seed": seed, "split": split, "n": len(mnist),
            "mnist": hashlib.sha256(mnist.data.numpy().tobytes() + mnist.targets.numpy().tobytes()).hexdigest()[:16],
            "photos": _photos_fingerprint(photos) if photos_dir is not None else _builtin_fingerprint(),
        }
        key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_path = folder / "mnistm" / f"mnistm-{split}-{key}.npz"
        data = self._load_cache()
        if data is None:
            rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
            data = blend_mnistm(mnist.data.numpy(), [arr for _, arr in photos], rng,
                                desc=f"MNIST-M {split}: building {self.cache_path.name}")
            self._save_cache(data, key_fields)
        self.data = torch.from_numpy(data)
        self.targets = mnist.targets

    def _sidecar(self) -> Path:
        return self.cache_path.with_suffix(".json")

    def _load_cache(self) -> np.ndarray | None:
        if not self.cache_path.exists():
            return None
        try:
            meta = json.loads(self._sidecar().read_text())
            with np.load(self.cache_path) as f:
                data = f["images"]
            if hashlib.sha256(data.tobytes()).hexdigest() != meta["sha256"]:
                raise ValueError("sha256 mismatch")
            return data
        except Exception as err:  # any damage (truncation, bad zip, wrong sidecar) means: rebuild
            log.warning("MNIST-M cache %s is damaged (%s); rebuilding it", self.cache_path, err)
            return None

    def _save_cache(self, data: np.ndarray, key_fields: dict) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        # Write to temporary names, then rename: a killed build never leaves a half cache under the final name.
        tmp = self.cache_path.with_name(self.cache_path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, images=data)
        meta = dict(key_fields, sha256=hashlib.sha256(data.tobytes()).hexdigest(), shape=list(data.shape))
        tmp_meta = self._sidecar().with_name(self._sidecar().name + f".tmp{os.getpid()}")
        tmp_meta.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_meta, self._sidecar())
        os.replace(tmp, self.cache_path)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        image = self.data[index].permute(2, 0, 1).float().div_(255)
        sample = {"image": image, "label": self.targets[index]}
        return self.apply_transforms(sample)

    def extra_repr(self) -> str:
        photos = self.photos_dir if self.photos_dir is not None else "the scikit-image / scikit-learn photos"
        return f"{super().extra_repr()}\nPhotos: {photos}\nSeed: {self.seed}\nCache: {self.cache_path}"
