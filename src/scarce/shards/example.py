"""The ``tf.train.Example`` codec: record dicts <-> serialized examples, byte-compatible with TensorFlow.

A decoded example is a ``dict`` mapping a feature name to a ``list`` of ``bytes``, ``int`` or ``float``
(float32 values, exactly as stored). :func:`decode_example_kinds` also gives each feature's kind
(``"bytes"``, ``"int64"``, ``"float"``, or ``None`` for a feature with no kind set).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from scarce._errors import CorruptRecordError, FeatureError
from scarce.shards import example_proto
from scarce.shards.tfrecord import SkipReport, iter_raw_records



__all__ = [
    "KINDS",
    "encode_example",
    "decode_example",
    "decode_example_kinds",
    "parse_example",
    "read_records",
    "values_and_kind",
]

KINDS = ("bytes", "int64", "float")
_ONEOF = {"bytes_list": "bytes", "int64_list": "int64", "float_list": "float"}
_KIND_FIELD = {kind: name for name, kind in _ONEOF.items()}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _is_bytes_like(v: Any) -> bool:
    return isinstance(v, (bytes, bytearray, memoryview, str, np.bytes_, np.str_))


def _to_bytes(v: Any) -> bytes:
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _kind_of_scalar(v: Any) -> str | None:
    if _is_bytes_like(v):
        return "bytes"
    if isinstance(v, (bool, int, np.integer, np.bool_)):
        return "int64"
    if isinstance(v, (float, np.floating)):
        return "float"
    return None


def values_and_kind(name: str, value: Any, known_kind: str | None) -> tuple[str, list]:
    """Turn one record-dict value into (kind, list of python values)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iub":
            return "int64", value.astype(np.int64).reshape(-1).tolist()
        if value.dtype.kind == "f":
            return "float", value.astype(np.float32).reshape(-1).tolist()
        if value.dtype.kind in "SUO":
            value = value.reshape(-1).tolist()
            if not value:
                return "bytes", []
        else:
            raise FeatureError(f"feature {name!r}: numpy dtype {value.dtype} cannot be stored; expected an "
                               "integer, bool, floating, bytes or str array")
    scalar_kind = _kind_of_scalar(value)
    if scalar_kind is not None:
        value = [value]
    elif not isinstance(value, (list, tuple)):
        raise FeatureError(f"feature {name!r}: cannot store a {type(value).__name__}; expected bytes, str, int, "
                           "float, a list/tuple of one of those, or a numpy array")
    kinds = {_kind_of_scalar(v) for v in value}
    if None in kinds:
        bad = next(v for v in value if _kind_of_scalar(v) is None)
        raise FeatureError(f"feature {name!r}: list holds a {type(bad).__name__}; expected bytes, str, int or float")
    if kinds == {"int64", "float"}:
        kinds = {"float"}  # [1, 2.5] is a float list, as numpy would read it
    if len(kinds) > 1:
        raise FeatureError(f"feature {name!r}: list mixes kinds {sorted(kinds)}; a feature holds one kind")
    if not kinds:
        if known_kind is None:
            raise FeatureError(f"feature {name!r}: an empty list has no kind; pass a typed numpy array "
                               "(np.array([], dtype=np.int64), np.float32 or object for bytes)")
        return known_kind, []
    kind = kinds.pop()
    if kind == "bytes":
        return kind, [_to_bytes(v) for v in value]
    if kind == "int64":
        ints = [int(v) for v in value]
        for v in ints:
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise FeatureError(f"feature {name!r}: {v} does not fit in int64")
        return kind, ints
    return kind, [float(v) for v in value]


def encode_example(record: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> bytes:
    """Serialize a record dict into a ``tf.train.Example``.

    Values: ``bytes``/``str`` -> bytes_list (str as UTF-8); ``int``/``bool`` -> int64_list; ``float`` ->
    float_list (stored as float32); lists/tuples of one of those; numpy arrays (or torch tensors) by dtype
    (integer/bool -> int64, floating -> float, bytes/str -> bytes), flattened. ``kinds`` gives the kind of
    features whose value may be an empty list.

    Raises:
        FeatureError: A value that cannot be stored, naming the feature and what is accepted.
    """
    example = example_proto.Example()
    feature_map = example.features.feature
    for name, value in record.items():
        kind, values = values_and_kind(str(name), value, (kinds or {}).get(name))
        getattr(feature_map[str(name)], _KIND_FIELD[kind]).value.extend(values)
    # Sorted map keys: the same record always gives the same bytes.
    return example.SerializeToString(deterministic=True)


def _parse_proto(data: bytes, path: str | None = None, offset: int | None = None) -> example_proto.Example:
    example = example_proto.Example()
    try:
        example.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise CorruptRecordError(path or "<bytes>", offset or 0, f"record is not a tf.train.Example ({err})") from err
    return example


def decode_example_kinds(data: bytes, path: str | None = None, offset: int | None = None) -> dict[str, tuple]:
    """Decode a serialized ``tf.train.Example`` into ``{name: (kind, values)}`` (kind ``None``: no kind set)."""
    out = {}
    for name, feature in _parse_proto(data, path, offset).features.feature.items():
        which = feature.WhichOneof("kind")
        if which is None:
            out[name] = (None, [])
        else:
            out[name] = (_ONEOF[which], list(getattr(feature, which).value))
    return out


def decode_example(data: bytes, path: str | None = None, offset: int | None = None) -> dict[str, list]:
    """Decode a serialized ``tf.train.Example`` into ``{name: list of bytes | int | float}``."""
    out = {}
    for name, feature in _parse_proto(data, path, offset).features.feature.items():
        which = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, which).value) if which is not None else []
    return out


def parse_example(data: bytes, kinds: Mapping[str, str], *, where: str = "") -> dict[str, list]:
    """Decode only the features named in ``kinds`` (name -> ``"bytes"|"int64"|"float"``), checking each kind.

    Raises:
        FeatureError: A missing key or a feature of another kind, naming the key, the expected and the
            found kind (and the existing keys).
    """
    features = _parse_proto(data, where or None).features.feature
    out = {}
    prefix = f"{where}: " if where else ""
    for name, kind in kinds.items():
        if name not in features:
            raise FeatureError(f"{prefix}feature {name!r} ({kind}) is missing; the example has "
                               f"{sorted(features.keys())}")
        feature = features[name]
        which = feature.WhichOneof("kind")
        if which is None:
            out[name] = []
            continue
        if _ONEOF[which] != kind:
            raise FeatureError(f"{prefix}feature {name!r}: expected kind {kind}, found {_ONEOF[which]}")
        out[name] = list(getattr(feature, which).value)
    return out


def read_records(
    path: str | Path,
    compression: str | None = "auto",
    verify: bool = True,
    *,
    skip_corrupt: bool = False,
    report: SkipReport | None = None,
    max_record_bytes: int | None = None,
) -> Iterator[dict[str, list]]:
    """Yield every record of one file as a decoded example dict (see :func:`decode_example`).

    ``skip_corrupt`` also skips a record that is not a ``tf.train.Example``; skips go to ``report``, or without
    one into a :class:`~scarce.shards.tfrecord.SkippedRecordsWarning` at the end (see
    :func:`~scarce.shards.tfrecord.iter_raw_records`).
    """
    own_report = report is None and skip_corrupt
    report = SkipReport() if report is None else report
    before = len(report)
    try:
        for offset, _, data in iter_raw_records(path, compression, verify, skip_corrupt=skip_corrupt, report=report,
                                                with_offsets=True, max_record_bytes=max_record_bytes):
            try:
                decoded = decode_example(data, str(path), offset)
            except CorruptRecordError as err:
                if not skip_corrupt:
                    raise
                report.add(err)
                continue
            yield decoded
    finally:
        if own_report:
            report.warn_since(before)
