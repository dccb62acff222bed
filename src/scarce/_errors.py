"""Typed errors for user-facing problems: bad files, bad values, missing data."""

__all__ = ["ScarceError", "DataNotFoundError", "CorruptRecordError", "FeatureError"]


class ScarceError(Exception):
    """A problem the user can fix; the message names the file, field or value and what was expected."""


class DataNotFoundError(ScarceError, FileNotFoundError):
    """A dataset folder or file is missing; the message shows the expected layout."""


class CorruptRecordError(ScarceError):
    """A TFRecord file is damaged: the message names the file and the byte offset (like TF's DataLossError)."""

    def __init__(self, path, offset: int, what: str = "corrupted record"):
        self.path, self.offset, self.what = str(path), int(offset), what
        super().__init__(f"{path}: {what} at byte {offset}")


class FeatureError(ScarceError, KeyError):
    """A tf.train.Example lacks a key, or holds a feature of another kind than expected."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
