"""Property tests: random or damaged bytes never hang the reader, and fail only with scarce's typed errors."""

import gzip
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scarce import shards as tfr
from scarce._errors import ScarceError

FIXTURE = Path(__file__).parent / "fixtures" / "tfrecord" / "mixed.tfrecord"
VALID = FIXTURE.read_bytes()[:6000]  # a few whole records and a cut one
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_all(path, compression="auto", verify=True) -> int:
    """Read and decode everything; return how many records came back or raise a ScarceError."""
    return sum(1 for _ in tfr.read_records(path, compression=compression, verify=verify))


def _check(tmp_path, blob: bytes, **kwargs) -> None:
    path = tmp_path / "fuzz.tfrecord"
    path.write_bytes(blob)
    try:
        _read_all(path, **kwargs)
    except ScarceError:
        pass  # CorruptRecordError / FeatureError: the allowed outcome for damage


@pytest.mark.timeout(120)
@SETTINGS
@given(blob=st.binary(max_size=4096), compression=st.sampled_from(["auto", "none", "gzip", "zlib"]),
       verify=st.booleans())
def test_random_bytes(tmp_path, blob, compression, verify):
    _check(tmp_path, blob, compression=compression, verify=verify)


@pytest.mark.timeout(120)
@SETTINGS
@given(data=st.data(), verify=st.booleans(), wrap=st.sampled_from(["none", "gzip", "zlib"]))
def test_damaged_valid_file(tmp_path, data, verify, wrap):
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    blob = bytes(blob[: data.draw(st.integers(0, len(blob)))])
    if wrap == "gzip":
        blob = gzip.compress(blob)
    elif wrap == "zlib":
        blob = zlib.compress(blob)
    if data.draw(st.booleans()) and blob:  # damage the compressed stream itself
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    _check(tmp_path, blob, verify=verify)


@SETTINGS
@given(blob=st.binary(max_size=2048))
def test_decode_example_random_bytes(blob):
    try:
        tfr.decode_example(blob)
    except ScarceError:
        pass
