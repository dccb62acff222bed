"""Shards: TFRecord files byte-compatible with TensorFlow, the image codec, readers and the record schemas.

The layer under both :mod:`scarce.data` and :mod:`scarce.render`; it imports nothing of scarce but
``scarce._errors`` and itself. The names below are importable from ``scarce.shards`` directly (each loaded
from its module on first use, so the framing tools start without importing torch).

* :mod:`~scarce.shards.tfrecord`: framing, masked CRC32C, GZIP / ZLIB, index files, file lists.
* :mod:`~scarce.shards.example`: the ``tf.train.Example`` codec, :func:`read_records`.
* :mod:`~scarce.shards.writer`: :class:`TFRecordWriter`, :func:`write_shards` and the JSON manifest.
* :mod:`~scarce.shards.images`: the one PNG / JPEG image and mask codec.
* :mod:`~scarce.shards.decode`: records -> sample dicts (:class:`FeatureDecoder`, :func:`finalize_sample`).
* :mod:`~scarce.shards.readers`: :class:`TFRecordDataset` (by index) and :class:`StreamingTFRecordDataset`
  (any file, exactly once per epoch over DDP ranks x DataLoader workers).
* :mod:`~scarce.shards.schemas`: the segmentation, rendered and image-folder records, encode and decode.
* :mod:`~scarce.shards.samples`: torchvision's dataset conventions for dict samples (:class:`SampleDataset`).
* :mod:`~scarce.shards.tfds`: datasets prepared by ``tensorflow_datasets``: ``dataset_info.json``,
  ``features.json``, split strings, examples -> nested numpy samples (:class:`TFDSInfo`).
* :mod:`~scarce.shards.storage`: local paths and fsspec URLs (``s3://``, ``gs://``, ``https://``) for all of the
  above.
"""

import importlib

# name -> submodule. Imported on first use, so that `scarce data inspect` (framing only) never pays for torch.
_HOMES = {
    **dict.fromkeys(("DESCRIPTION_KINDS", "FeatureDecoder", "RecordParser", "finalize_sample", "image_tensor",
                     "mask_tensor"), "decode"),
    **dict.fromkeys(("KINDS", "decode_example", "decode_example_kinds", "encode_example", "parse_example",
                     "read_records"), "example"),
    **dict.fromkeys(("check_image", "decode_image", "decode_mask", "decode_pixels", "encode_png", "is_jpeg"), "images"),
    **dict.fromkeys(("ShuffleBuffer", "StreamingTFRecordDataset", "TFRecordDataset", "consumer_ranges",
                     "distributed_rank"), "readers"),
    **dict.fromkeys(("COMPRESSIONS", "MAX_RECORD_BYTES", "SkipReport", "SkippedRecordsWarning", "count_records",
                     "create_index", "detect_compression", "expand_files", "find_shards", "frame", "index_path_for",
                     "iter_raw_records", "load_index", "load_manifest", "masked_crc", "read_record_at",
                     "unfinished_writes"), "tfrecord"),
    **dict.fromkeys(("SampleDataset", "SampleTransforms"), "samples"),
    **dict.fromkeys(("TFDSInfo",), "tfds"),
    **dict.fromkeys(("READ_AHEAD_BYTES", "is_url"), "storage"),
    **dict.fromkeys(("MANIFEST_SUFFIX", "ObjectStoreShardFolder", "ShardFolder", "TFRecordWriter", "check_manifest",
                     "manifest_counts", "shard_name", "write_shards"), "writer"),
}

__all__ = sorted(_HOMES)  # noqa: PLE0605 - every name of the table above


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"scarce.shards.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'scarce.shards' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

