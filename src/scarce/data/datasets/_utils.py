"""Small helpers shared by the datasets."""

from __future__ import annotations

from collections.abc import Iterable

from scarce._errors import ScarceError

__all__ = ["verify_str_arg"]


def verify_str_arg(value: str, arg: str, valid_values: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid_values``, else raise naming the argument and the choices."""
    valid = tuple(valid_values)
    if value not in valid:
        raise ScarceError(f"Unknown value {value!r} for argument {arg}. Valid values are {{{', '.join(map(repr, valid))}}}.")
    return value
