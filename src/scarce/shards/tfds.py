"""Datasets prepared by ``tensorflow_datasets`` (TFDS), read without TensorFlow.

``tfds.load`` / ``builder.download_and_prepare`` leave one folder per dataset version::

    data_dir/                                  (TFDS' default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
        NAME/
            [CONFIG/]                          (datasets with builder configs, e.g. mnist_corrupted/shot_noise)
            VERSION/                           (e.g. 3.0.2)
                dataset_info.json              splits: name, shardLengths, filepathTemplate
                features.json                  the feature spec (FeaturesDict of Image, ClassLabel, ...)
                FEATURE.labels.txt             class names of a ClassLabel, one a line (if it has names)
                NAME-SPLIT.tfrecord-00000-of-0000N   tf.train.Example records

:func:`load_info` reads the two JSON files into a :class:`TFDSInfo` (the split files from ``shardLengths`` and
``filepathTemplate``; the feature spec as a tree of :class:`Feature`), and :meth:`Feature.decode` turns a decoded
``tf.train.Example`` (:func:`scarce.shards.example.decode_example`) into the nested dict of numpy values
``tfds.as_numpy`` gives: images ``(H, W, C)`` uint8 (or uint16), ``ClassLabel`` int64, ``Text`` ``str`` (TFDS
gives UTF-8 ``bytes``), ``Tensor`` arrays of their dtype and shape, ``Sequence`` stacked along a first axis.
Supported: ``FeaturesDict``, ``Tensor`` (encodings none, bytes, zlib; dynamic shapes), ``Scalar``, ``ClassLabel``,
``Image`` (PNG / JPEG, uint8 / uint16), ``BBoxFeature``, ``Text``, ``Sequence`` of any of those (one level).
Anything else (``Video``, ``Audio``, ``Translation``, nested ``Sequence``, ...) is a one-line error naming it.

Split strings follow TFDS (:func:`parse_split`): ``"train"``, ``"train+test"``, ``"all"``, ``"train[:80%]"``,
``"train[10:20]"``, ``"train[-2shard:]"`` (percent boundaries rounded to the closest example, as TFDS does).

This module imports numpy only: ``scarce data inspect`` / ``dump`` read TFDS folders without torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scarce._errors import DataNotFoundError, FeatureError, ScarceError
from scarce.shards.images import decode_pixels

__all__ = [
    "DATASET_INFO",
    "FEATURES_JSON",
    "TFDS_LAYOUT",
    "Feature",
    "SplitInfo",
    "SplitSlice",
    "TFDSInfo",
    "default_data_dir",
    "find_version_dir",
    "is_version_dir",
    "load_info",
    "parse_split",
]

DATASET_INFO = "dataset_info.json"
FEATURES_JSON = "features.json"
# TFDS' file name template before it was written into dataset_info.json (tensorflow_datasets < 4.4).
_DEFAULT_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"

TFDS_LAYOUT = """\
data_dir/
    NAME/
        [CONFIG/]
        VERSION/
            dataset_info.json
            features.json
            NAME-SPLIT.tfrecord-00000-of-0000N
(what tensorflow_datasets' download_and_prepare writes)"""

# numpy dtype names TFDS writes into features.json -> the tf.train.Example kind a plain tensor of it is stored as.
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_STRING_DTYPES = ("string", "str", "bytes", "object")
_ENCODINGS = ("none", "bytes", "zlib")


def default_data_dir() -> Path:
    """TFDS' default ``data_dir``: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets")).expanduser()


# --------------------------------------------------------------------------------------------- the feature spec


def _shape(proto: Mapping[str, Any] | None) -> tuple[int | None, ...]:
    dims = (proto or {}).get("dimensions", [])
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def _numpy_dtype(name: str, where: str) -> np.dtype | None:
    """The numpy dtype of a features.json dtype name (``None`` for strings)."""
    if name in _STRING_DTYPES:
        return None
    if name == "bfloat16":
        raise FeatureError(f"{where}: dtype bfloat16 is not supported (numpy has none); expected an integer, bool, "
                           "float16/32/64 or string tensor")
    if name not in _INT_DTYPES + _FLOAT_DTYPES:
        raise FeatureError(f"{where}: unknown dtype {name!r}; expected one of {list(_INT_DTYPES + _FLOAT_DTYPES)} "
                           "or string")
    return np.dtype(name)


@dataclass(frozen=True)
class Feature:
    """One node of a TFDS feature spec (``features.json``).

    Attributes:
        kind: ``dict``, ``tensor`` (also ``Scalar`` and ``BBoxFeature``), ``class_label``, ``image``, ``text`` or
            ``sequence``.
        dtype: numpy dtype name of the decoded values (``"string"`` for string tensors; ``text``: ``"string"``).
        shape: decoded shape, ``None`` for an unknown dimension (``sequence``: of one element).
        encoding: ``tensor``: ``none``, ``bytes`` or ``zlib``; ``image``: ``png`` or ``jpeg`` (empty: PNG).
        names: ``class_label``: the class names from ``FEATURE.labels.txt`` (``None`` when it has none).
        num_classes: ``class_label``: the number of classes.
        children: ``dict``: name -> feature.
        element: ``sequence``: the feature repeated; ``length`` its fixed length (``None``: variable).
        python_class: TFDS' class name, for messages.
    """

    kind: str
    dtype: str = ""
    shape: tuple[int | None, ...] = ()
    encoding: str = "none"
    names: tuple[str, ...] | None = None
    num_classes: int | None = None
    children: dict[str, Feature] = field(default_factory=dict)
    element: Feature | None = None
    length: int | None = None
    python_class: str = ""

    # ------------------------------------------------------------------ parsing

    @classmethod
    def from_json(cls, node: Mapping[str, Any], *, path: str = "", folder: Path | None = None,
                  where: str = FEATURES_JSON, in_sequence: bool = False) -> Feature:
        """Parse one node of ``features.json`` (the proto JSON TFDS >= 4.6 writes); ``path`` is its ``a/b`` name.

        ``folder`` is where ``FEATURE.labels.txt`` files are looked for.
        """
        here = f"{_at(where)}feature {path!r}" if path else where
        if "type" in node and "content" in node:
            raise FeatureError(f"{where}: written by tensorflow_datasets < 4.6 (a 'type'/'content' spec); scarce reads "
                               "the format of 4.6 and later: prepare the dataset again with a recent "
                               "tensorflow_datasets")
        python_class = str(node.get("pythonClassName", ""))
        short = python_class.rsplit(".", 1)[-1] or "?"
        content = [k for k in node if k not in ("pythonClassName", "description", "valueRange")]
        if len(content) != 1:
            raise FeatureError(f"{here}: expected one feature type among {sorted(_PARSERS)}, found {content}")
        key = content[0]
        if key not in _PARSERS:
            raise FeatureError(f"{here}: TFDS feature {short} ({key!r}) is not supported; scarce reads "
                               f"{', '.join(_SUPPORTED_NAMES)}")
        return _PARSERS[key](cls, node[key], path=path, folder=folder, where=where, here=here,
                             python_class=short, in_sequence=in_sequence)

    # ------------------------------------------------------------------ the example keys

    def leaves(self, path: str = "") -> Iterator[tuple[str, Feature]]:
        """``(a/b path, feature)`` of every leaf, in features.json order (sorted names)."""
        if self.kind == "dict":
            for name, child in self.children.items():
                yield from child.leaves(f"{path}/{name}" if path else name)
        elif self.kind == "sequence" and self.element.kind == "dict":
            for name, leaf in self.element.leaves():
                yield f"{path}/{name}" if path else name, Feature(kind="sequence", element=leaf, length=self.length,
                                                                  python_class="Sequence")
        else:
            yield path, self

    def describe(self) -> str:
        """A one-line description, e.g. ``Image(shape=(None, None, 3), dtype=uint8, png)``."""
        if self.kind == "dict":
            return f"FeaturesDict({len(self.children)} features)"
        if self.kind == "sequence":
            length = "" if self.length is None else f", length={self.length}"
            return f"Sequence({self.element.describe()}{length})"
        if self.kind == "class_label":
            names = f", names={list(self.names)}" if self.names is not None else ""
            return f"ClassLabel(num_classes={self.num_classes}{names})"
        if self.kind == "text":
            return "Text()"
        if self.kind == "image":
            return f"Image(shape={self.shape}, dtype={self.dtype}, {self.encoding or 'png'})"
        encoding = f", encoding={self.encoding}" if self.encoding != "none" else ""
        return f"{self.python_class or 'Tensor'}(shape={self.shape}, dtype={self.dtype}{encoding})"

    # ------------------------------------------------------------------ decoding

    def decode(self, example: Mapping[str, list], *, where: str = "", decode_images: bool = True) -> dict[str, Any]:
        """A decoded ``tf.train.Example`` (flat ``a/b`` keys -> value lists) -> the nested sample of numpy values.

        ``decode_images=False`` leaves images as their encoded bytes (PNG / JPEG), as stored.

        Raises:
            FeatureError: a missing key, a value count that does not fit the shape, an undecodable image; the
                message names ``where`` (file and record) and the feature.
        """
        if self.kind != "dict":
            raise ScarceError("Feature.decode is called on the top FeaturesDict")
        return _decode_dict(self, example, "", _Where(where, decode_images))


def _parse_dict(cls, body, *, path, folder, where, here, python_class, in_sequence):
    features = (body or {}).get("features", {})
    children = {name: cls.from_json(child, path=f"{path}/{name}" if path else name, folder=folder, where=where,
                                    in_sequence=in_sequence)
                for name, child in sorted(features.items())}
    return cls(kind="dict", children=children, python_class=python_class)


def _parse_tensor(cls, body, *, path, folder, where, here, python_class, in_sequence):
    dtype = str(body.get("dtype", ""))
    _numpy_dtype(dtype, here)
    encoding = str(body.get("encoding", "none") or "none").lower()
    if encoding not in _ENCODINGS:
        raise FeatureError(f"{here}: Tensor encoding {encoding!r} is not supported; expected {list(_ENCODINGS)}")
    shape = _shape(body.get("shape"))
    if in_sequence and (None in shape or encoding != "none"):
        raise FeatureError(f"{here}: a Sequence of tensors with unknown dimensions or an encoding is stored ragged by "
                           "TFDS, which scarce does not read; supported: Sequence(Tensor) of a fixed shape")
    if dtype in _STRING_DTYPES and shape.count(None) > 1:
        raise FeatureError(f"{here}: string Tensor with several unknown dimensions is not supported")
    return cls(kind="tensor", dtype="string" if dtype in _STRING_DTYPES else dtype, shape=shape, encoding=encoding,
               python_class=python_class)


def _parse_class_label(cls, body, *, path, folder, where, here, python_class, in_sequence):
    num_classes = int((body or {}).get("numClasses", 0))
    names = None
    if folder is not None:
        names_file = folder / f"{_metadata_name(path)}.labels.txt"
        if names_file.is_file():
            names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").split("\n") if line.strip())
            if len(names) != num_classes:
                raise FeatureError(f"{names_file}: {len(names)} class names, but features.json says "
                                   f"numClasses {num_classes} for {path!r}")
    return cls(kind="class_label", dtype="int64", names=names, num_classes=num_classes, python_class=python_class)


def _parse_image(cls, body, *, path, folder, where, here, python_class, in_sequence):
    dtype = str(body.get("dtype", "uint8"))
    if dtype not in ("uint8", "uint16"):
        raise FeatureError(f"{here}: Image of dtype {dtype} is not supported (TFDS stores float32 images bit-cast "
                           "into 4-channel PNGs); scarce reads uint8 and uint16 images")
    shape = _shape(body.get("shape")) or (None, None, 3)
    fmt = str(body.get("encodingFormat", "") or "").lower()
    if fmt not in ("", "png", "jpeg"):
        raise FeatureError(f"{here}: Image encoding {fmt!r} is not supported; expected png or jpeg")
    return cls(kind="image", dtype=dtype, shape=shape, encoding=fmt, python_class=python_class)


def _parse_bbox(cls, body, *, path, folder, where, here, python_class, in_sequence):
    # A BBoxFeature is stored as a plain float tensor of shape (4,): (ymin, xmin, ymax, xmax) by default.
    dtype = str(body.get("dtype", "float32"))
    _numpy_dtype(dtype, here)
    return cls(kind="tensor", dtype=dtype, shape=_shape(body.get("shape")) or (4,), python_class=python_class)


def _parse_text(cls, body, *, path, folder, where, here, python_class, in_sequence):
    return cls(kind="text", dtype="string", python_class=python_class)


def _parse_sequence(cls, body, *, path, folder, where, here, python_class, in_sequence):
    if in_sequence:
        raise FeatureError(f"{here}: a Sequence inside a Sequence is stored ragged by TFDS, which scarce does not "
                           "read; supported: one level of Sequence")
    length = int(body.get("length", -1))
    # Class names of a Sequence's elements are saved under the Sequence's own name (Sequence.save_metadata).
    element = cls.from_json(body.get("feature", {}), path=path, folder=folder, where=where, in_sequence=True)
    return cls(kind="sequence", element=element, length=None if length < 0 else length, python_class=python_class)


_PARSERS = {
    "featuresDict": _parse_dict,
    "tensor": _parse_tensor,
    "classLabel": _parse_class_label,
    "image": _parse_image,
    "boundingBox": _parse_bbox,
    "text": _parse_text,
    "sequence": _parse_sequence,
}
_SUPPORTED_NAMES = ("FeaturesDict", "Tensor", "Scalar", "ClassLabel", "Image", "BBoxFeature", "Text", "Sequence")


def _metadata_name(path: str) -> str:
    """The file stem TFDS gives a nested feature's metadata: ``a/b/c`` -> ``a-b-c``
    (``convert_feature_name_to_filename`` per FeaturesDict level)."""
    return path.replace("/", "-")


# --------------------------------------------------------------------------------------------- decoding


class _Where(str):
    """Where the record comes from (for messages), carrying how to decode images along the recursion."""

    decode_images: bool

    def __new__(cls, where: str, decode_images: bool = True) -> _Where:
        self = super().__new__(cls, where)
        self.decode_images = decode_images
        return self


def _at(where: str) -> str:
    """The message prefix naming where a record comes from (nothing when unknown)."""
    return f"{where}: " if where else ""


def _values(example: Mapping[str, list], key: str, where: str) -> list:
    try:
        return example[key]
    except KeyError:
        raise FeatureError(f"{_at(where)}feature {key!r} is missing from the record; it has "
                           f"{sorted(example)}") from None


def _decode_dict(feature: Feature, example: Mapping[str, list], prefix: str, where: str) -> dict[str, Any]:
    return {name: _decode(child, example, f"{prefix}{name}", where) for name, child in feature.children.items()}


def _decode(feature: Feature, example: Mapping[str, list], key: str, where: str) -> Any:
    if feature.kind == "dict":
        return _decode_dict(feature, example, f"{key}/", where)
    if feature.kind == "sequence":
        return _decode_sequence(feature, example, key, where)
    if feature.kind == "tensor" and feature.shape.count(None) > 1:
        # Several unknown dimensions (TFDS requires an encoding then): the record holds the values and the shape.
        return _decode_tensor(feature, _values(example, f"{key}/value", where), key, where,
                              _values(example, f"{key}/shape", where))
    values = _values(example, key, where)
    if feature.kind == "tensor":
        return _decode_tensor(feature, values, key, where)
    _expect_one(values, key, where)
    return _decode_one(feature, values[0], key, where)


def _expect_one(values: list, key: str, where: str) -> None:
    if len(values) != 1:
        raise FeatureError(f"{_at(where)}feature {key!r}: expected 1 value, found {len(values)}")


def _decode_one(feature: Feature, value: Any, key: str, where: str) -> Any:
    """One stored value of a scalar-like feature (an image's bytes, a label, a text)."""
    stored = int if feature.kind == "class_label" else bytes
    if not isinstance(value, stored):
        # e.g. a Text with an encoder (TFDS' deprecated subword encoders store token ids)
        raise FeatureError(f"{_at(where)}feature {key!r} ({feature.describe()}) holds {type(value).__name__} values, "
                           f"expected {stored.__name__}; scarce reads plain (unencoded) TFDS features")
    if feature.kind == "image" and not getattr(where, "decode_images", True):
        return bytes(value)
    if feature.kind == "image":
        channels = feature.shape[-1] if feature.shape and feature.shape[-1] is not None else None
        array = decode_pixels(value, channels=channels, where=f"{_at(where)}feature {key!r}")
        if array.dtype != np.dtype(feature.dtype):
            raise FeatureError(f"{_at(where)}feature {key!r}: a {array.dtype} image, features.json says "
                               f"{feature.dtype}")
        return array
    if feature.kind == "class_label":
        return np.int64(value)
    if feature.kind == "text":
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as err:
            raise FeatureError(f"{_at(where)}feature {key!r}: Text that is not UTF-8 ({err})") from None
    raise ScarceError(f"feature {key!r}: {feature.kind} is not a scalar feature")  # pragma: no cover - parse rejects


_STORED_KIND = {"string": (bytes,), "float": (float,), "int": (int,)}


def _typed(values: list, dtype: str, key: str, where: str) -> np.ndarray:
    """The stored value list of a plain tensor -> a flat array of ``dtype`` (uint64 is stored bit-cast in int64)."""
    kind = "string" if dtype == "string" else "float" if dtype in _FLOAT_DTYPES else "int"
    if values and not isinstance(values[0], _STORED_KIND[kind]):
        raise FeatureError(f"{_at(where)}feature {key!r}: holds {type(values[0]).__name__} values, features.json says "
                           f"{dtype}")
    if kind == "string":
        return np.array([bytes(v) for v in values] or [], dtype=object)
    if dtype == "uint64":
        return np.array(values, dtype=np.int64).view(np.uint64)
    if dtype == "bool":
        return np.array(values, dtype=np.int64).astype(bool)
    return np.array(values, dtype=np.float32 if kind == "float" else np.int64).astype(dtype)


def _reshape(flat: np.ndarray, shape: Sequence[int | None], key: str, where: str) -> np.ndarray:
    known = math.prod(d for d in shape if d is not None)
    unknown = shape.count(None)
    if (unknown == 0 and flat.size != known) or (unknown == 1 and (known == 0 or flat.size % known)):
        raise FeatureError(f"{_at(where)}feature {key!r}: {flat.size} values do not fit shape "
                           f"{tuple(-1 if d is None else d for d in shape)}")
    if unknown == 1 and known == 0:
        return flat.reshape([0 if d is None else d for d in shape])
    return flat.reshape([-1 if d is None else d for d in shape])


def _decode_tensor(feature: Feature, values: list, key: str, where: str, dynamic: list | None = None) -> Any:
    if feature.encoding == "none":
        flat = _typed(values, feature.dtype, key, where)
    else:
        _expect_one(values, key, where)
        raw = bytes(values[0])
        if feature.encoding == "zlib":
            try:
                raw = zlib.decompress(raw)
            except zlib.error as err:
                raise FeatureError(f"{_at(where)}feature {key!r}: damaged zlib data ({err})") from None
        dtype = np.dtype(feature.dtype)
        if len(raw) % dtype.itemsize:
            raise FeatureError(f"{_at(where)}feature {key!r}: {len(raw)} bytes are not a whole number of {dtype}")
        flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    shape = feature.shape
    if dynamic is not None:  # several unknown dimensions: the record holds the shape (known ones win, as TFDS)
        shape = tuple(int(s) if d is None else d for s, d in zip(dynamic, feature.shape))
    array = _reshape(flat, shape, key, where)
    if not feature.shape and feature.dtype == "string":
        return array.reshape(()).item()
    return array if array.ndim else array[()]


def _decode_sequence(feature: Feature, example: Mapping[str, list], key: str, where: str) -> Any:
    element = feature.element
    if element.kind == "dict":
        return {name: _decode_sequence(Feature(kind="sequence", element=child, length=feature.length),
                                       example, f"{key}/{name}", where)
                for name, child in element.children.items()}
    values = _values(example, key, where)
    if element.kind in ("image", "text"):
        items = [_decode_one(element, v, f"{key}[{i}]", where) for i, v in enumerate(values)]
        _check_length(feature, len(items), key, where)
        if element.kind == "text" or not getattr(where, "decode_images", True):
            return items
        if not items:
            h, w, c = (0 if d is None else d for d in element.shape)
            return np.zeros((0, h, w, c), dtype=element.dtype)
        if len({a.shape for a in items}) > 1:
            raise FeatureError(f"{_at(where)}feature {key!r}: a Sequence of images of different sizes "
                               f"{sorted({a.shape for a in items})} cannot be stacked")
        return np.stack(items)
    dtype = element.dtype
    flat = _typed(values, dtype, key, where)
    array = _reshape(flat, (feature.length, *element.shape), key, where)
    _check_length(feature, len(array), key, where)
    return array


def _check_length(feature: Feature, n: int, key: str, where: str) -> None:
    if feature.length is not None and n != feature.length:
        raise FeatureError(f"{_at(where)}feature {key!r}: a Sequence of {n} items, features.json says length "
                           f"{feature.length}")


# --------------------------------------------------------------------------------------------- dataset_info.json


@dataclass(frozen=True)
class SplitInfo:
    """One split: its shard files, in order, and the examples in each (``shardLengths``)."""

    name: str
    files: tuple[str, ...]
    shard_lengths: tuple[int, ...]
    num_bytes: int = 0

    @property
    def num_examples(self) -> int:
        return sum(self.shard_lengths)


@dataclass(frozen=True)
class SplitSlice:
    """Examples ``[start, stop)`` of one split (a part of a split string, resolved)."""

    split: str
    start: int
    stop: int


@dataclass(frozen=True)
class TFDSInfo:
    """What ``dataset_info.json`` and ``features.json`` of one prepared dataset version say.

    Attributes:
        path: the version folder.
        name: the dataset name (``dataset_info.json`` ``name``).
        version: e.g. ``"3.0.2"``.
        config: the builder config name, or ``""``.
        splits: split name -> :class:`SplitInfo`, in ``dataset_info.json`` order.
        features: the top :class:`Feature` (a ``dict``).
        supervised_keys: ``(input, target)`` feature names of ``as_supervised``, or ``None``.
        description: the dataset's description, if any.
    """

    path: Path
    name: str
    version: str
    config: str
    splits: dict[str, SplitInfo]
    features: Feature
    supervised_keys: tuple[str, str] | None
    description: str = ""

    @property
    def num_examples(self) -> int:
        return sum(s.num_examples for s in self.splits.values())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: missing; a TFDS dataset version folder holds it. Expected:\n"
                                f"{TFDS_LAYOUT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScarceError(f"{path}: not a readable JSON file ({err})") from None


def _supervised_keys(info: dict) -> tuple[str, str] | None:
    keys = info.get("supervisedKeys")
    if not keys:
        return None
    if "input" in keys and "output" in keys:  # tensorflow_datasets < 4.6
        return str(keys["input"]), str(keys["output"])
    items = keys.get("tuple", {}).get("items", [])
    if len(items) == 2 and all("featureKey" in item for item in items):
        return str(items[0]["featureKey"]), str(items[1]["featureKey"])
    return None  # nested supervised keys (dicts of features): not an (input, target) pair


def _split_files(folder: Path, name: str, split: dict, file_format: str) -> tuple[str, ...]:
    template = split.get("filepathTemplate") or _DEFAULT_TEMPLATE
    count = len(split.get("shardLengths", []))
    files = []
    for k in range(count):
        file_name = (template.replace("{DATASET}", name).replace("{SPLIT}", str(split["name"]))
                     .replace("{FILEFORMAT}", file_format).replace("{SHARD_X_OF_Y}", f"{k:05d}-of-{count:05d}")
                     .replace("{SHARD_INDEX}", f"{k:05d}").replace("{NUM_SHARDS}", f"{count:05d}"))
        if "{" in file_name:
            raise ScarceError(f"{folder / DATASET_INFO}: split {split['name']!r}: filepathTemplate {template!r} has a "
                              "field scarce does not know; expected {DATASET}, {SPLIT}, {FILEFORMAT}, {SHARD_X_OF_Y}")
        files.append(str(folder / file_name))
    return tuple(files)


def load_info(folder: str | Path) -> TFDSInfo:
    """Read one prepared dataset version folder (``data_dir/NAME[/CONFIG]/VERSION``).

    Raises:
        DataNotFoundError: a missing ``dataset_info.json`` / ``features.json``, or a shard file the split lists.
        ScarceError: a file format other than TFRecord, or an unreadable JSON file.
        FeatureError: a feature type scarce does not read (naming it).
    """
    folder = Path(folder).expanduser()
    info = _read_json(folder / DATASET_INFO)
    file_format = str(info.get("fileFormat", "tfrecord") or "tfrecord")
    if file_format != "tfrecord":
        raise ScarceError(f"{folder / DATASET_INFO}: fileFormat {file_format!r}; scarce reads TFRecord datasets "
                          "(prepare it with `file_format='tfrecord'`, TFDS' default)")
    name = str(info.get("name") or folder.parent.name)
    splits = {}
    for split in info.get("splits", []):
        lengths = tuple(int(n) for n in split.get("shardLengths", []))
        files = _split_files(folder, name, split, file_format)
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise DataNotFoundError(f"{missing[0]}: missing ({len(missing)} of {len(files)} shard(s) of split "
                                    f"{split['name']!r} listed by {folder / DATASET_INFO}); the dataset is "
                                    "incomplete: prepare it again")
        splits[str(split["name"])] = SplitInfo(str(split["name"]), files, lengths, int(split.get("numBytes", 0)))
    features = Feature.from_json(_read_json(folder / FEATURES_JSON), folder=folder, where=str(folder / FEATURES_JSON))
    if features.kind != "dict":
        raise FeatureError(f"{folder / FEATURES_JSON}: the top feature is a {features.python_class}; scarce reads "
                           "datasets whose features are a FeaturesDict (every TFDS catalogue dataset)")
    config = str(info.get("configName", "") or "")
    return TFDSInfo(path=folder, name=name, version=str(info.get("version", folder.name)), config=config,
                    splits=splits, features=features, supervised_keys=_supervised_keys(info),
                    description=str(info.get("description", "") or ""))


# --------------------------------------------------------------------------------------------- finding a version


def is_version_dir(path: str | Path) -> bool:
    """Whether ``path`` is a prepared dataset version folder (it holds ``dataset_info.json``)."""
    return (Path(path) / DATASET_INFO).is_file()


def _version_key(name: str) -> tuple[int, ...] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", name)
    return tuple(int(g) for g in match.groups()) if match else None


def _versions(folder: Path) -> list[str]:
    found = [p.name for p in folder.iterdir() if p.is_dir() and _version_key(p.name) and is_version_dir(p)] \
        if folder.is_dir() else []
    return sorted(found, key=_version_key)


def find_version_dir(data_dir: str | Path | None, name: str, version: str | None = None) -> Path:
    """The folder of dataset ``name`` (``"NAME"``, ``"NAME/CONFIG"``, optionally ``":VERSION"`` as in ``tfds.load``)
    under ``data_dir`` (``None``: :func:`default_data_dir`); without a version, the newest prepared one.

    Raises:
        DataNotFoundError: no such dataset, config or version; the message lists what is there.
    """
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if ":" in name:
        name, _, named_version = name.partition(":")
        if version is not None and version != named_version:
            raise ScarceError(f"dataset {name!r}: version {named_version!r} in the name and version={version!r} "
                              "disagree; give one")
        version = named_version
    if not root.is_dir():
        raise DataNotFoundError(f"TFDS data_dir {str(root)!r} is not a folder. Expected:\n{TFDS_LAYOUT}")
    folder = root / name
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        raise DataNotFoundError(f"no dataset {name!r} in {str(root)!r} (found: {', '.join(present) or 'nothing'}). "
                                f"Expected:\n{TFDS_LAYOUT}")
    versions = _versions(folder)
    if not versions:
        configs = sorted(p.name for p in folder.iterdir() if p.is_dir() and _versions(p))
        if configs:
            raise DataNotFoundError(f"dataset {name!r} in {str(root)!r} has builder configs: name one, e.g. "
                                    f"'{name}/{configs[0]}' (found: {', '.join(configs)})")
        raise DataNotFoundError(f"dataset {name!r} in {str(root)!r} has no prepared version (no VERSION/"
                                f"{DATASET_INFO}; an unfinished download_and_prepare leaves incomplete.* folders)")
    if version is None:
        return folder / versions[-1]
    if version not in versions:
        raise DataNotFoundError(f"dataset {name!r} in {str(root)!r} has no version {version!r} (found: "
                                f"{', '.join(versions)})")
    return folder / version


# --------------------------------------------------------------------------------------------- split strings

_SUB_SPLIT = re.compile(r"^(?P<name>[\w-]+)(\[(?P<selector>[\d\w%:.-]+)\])?$")
_BOUNDARY = re.compile(r"^(?:(?P<value>-?[\d_.]+)(?P<unit>%|shard)?)?$")


def parse_split(spec: str, splits: Mapping[str, SplitInfo]) -> list[SplitSlice]:
    """A TFDS split string -> the example ranges it reads, in order (see the module docstring for the syntax).

    Raises:
        ScarceError: an unknown split (listing the valid ones) or a malformed / out-of-range slice.
    """
    spec = str(spec).strip()
    parts = [p for p in re.split(r"\s*\+\s*", spec)]
    out: list[SplitSlice] = []
    for part in parts:
        match = _SUB_SPLIT.match(part)
        if not match:
            raise ScarceError(f"split {spec!r}: cannot read {part!r}; expected NAME, NAME[a:b] (examples), "
                              "NAME[a%:b%] or NAME[ashard:bshard], joined with '+'")
        name, selector = match["name"], match["selector"]
        if name == "all":
            if selector:
                raise ScarceError(f"split {spec!r}: 'all' takes no slice")
            out += [SplitSlice(s.name, 0, s.num_examples) for s in splits.values()]
            continue
        if name not in splits:
            raise ScarceError(f"Unknown value {name!r} for split. Valid values are "
                              f"{{{', '.join(map(repr, splits))}}} (or 'all', slices like 'train[:80%]', '+').")
        out.append(_slice(splits[name], selector, spec))
    return out


def _slice(split: SplitInfo, selector: str | None, spec: str) -> SplitSlice:
    n = split.num_examples
    if selector is None:
        return SplitSlice(split.name, 0, n)
    bounds = [_BOUNDARY.match(b) for b in selector.split(":")]
    if len(bounds) == 1 and bounds[0] and bounds[0]["unit"] == "shard":
        k = int(bounds[0]["value"])
        bounds_values, unit = [k, k + 1], "shard"
    elif len(bounds) == 2 and all(bounds) and any(b.group(0) for b in bounds):
        unit = bounds[0]["unit"] or bounds[1]["unit"] or "abs"
        bounds_values = [None if not b["value"] else (float(b["value"]) if unit == "%" else int(b["value"]))
                         for b in bounds]
    else:
        raise ScarceError(f"split {spec!r}: slice [{selector}] is not [a:b] (examples), [a%:b%] or [ashard:bshard]")
    start, stop = bounds_values
    if unit == "%":
        start = 0 if start is None else int(round(start * n / 100.0))
        stop = n if stop is None else int(round(stop * n / 100.0))
    elif unit == "shard":
        lengths = split.shard_lengths
        start = 0 if start is None else sum(lengths[:start])
        if stop is not None and stop <= 0:
            stop = len(lengths) + stop
        stop = n if stop is None else sum(lengths[:stop])
    else:
        start = 0 if start is None else start
        stop = n if stop is None else stop
    if abs(start) > n or abs(stop) > n:
        raise ScarceError(f"split {spec!r}: slice [{selector}] is out of range for {n} examples of "
                          f"{split.name!r}")
    start, stop = (start + n if start < 0 else start), (stop + n if stop < 0 else stop)
    return SplitSlice(split.name, start, max(start, stop))
