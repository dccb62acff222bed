"""The ``tf.train.Example`` protobuf messages, built from their schema with the protobuf runtime alone.

TensorFlow's ``tensorflow/core/example/{feature,example}.proto``, field for field::

    syntax = "proto3";
    package tensorflow;
    message BytesList { repeated bytes value = 1; }
    message FloatList { repeated float value = 1 [packed = true]; }
    message Int64List { repeated int64 value = 1 [packed = true]; }
    message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    message Features { map<string, Feature> feature = 1; }
    message Example { Features features = 1; }

The descriptor goes into a pool of its own (not protobuf's default pool, where TensorFlow or another package may have
registered the same names), and no generated ``_pb2`` module is involved, so no ``protoc`` version has to match the
installed protobuf. The wire format is what makes records compatible, and it follows from the field numbers and
types above (``tests/test_tfrecord.py`` reads TensorFlow's files and compares bytes).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["BytesList", "Example", "Feature", "Features", "FloatList", "Int64List"]

_FIELD = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow"


def _message(file: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto, name: str,
             *fields: tuple[str, int, int, int, str | None]) -> descriptor_pb2.DescriptorProto:
    """Add message ``name`` with ``(name, number, type, label, message type)`` fields to a file or a message."""
    message = file.message_type.add(name=name) if hasattr(file, "message_type") else file.nested_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name is not None:
            field.type_name = f".{_PACKAGE}.{type_name}"
    return message


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="scarce/tensorflow_example.proto", package=_PACKAGE,
                                              syntax="proto3")
    repeated, optional = _FIELD.LABEL_REPEATED, _FIELD.LABEL_OPTIONAL
    _message(file, "BytesList", ("value", 1, _FIELD.TYPE_BYTES, repeated, None))
    for name, kind in (("FloatList", _FIELD.TYPE_FLOAT), ("Int64List", _FIELD.TYPE_INT64)):
        _message(file, name, ("value", 1, kind, repeated, None)).field[0].options.packed = True
    feature = _message(file, "Feature", ("bytes_list", 1, _FIELD.TYPE_MESSAGE, optional, "BytesList"),
                       ("float_list", 2, _FIELD.TYPE_MESSAGE, optional, "FloatList"),
                       ("int64_list", 3, _FIELD.TYPE_MESSAGE, optional, "Int64List"))
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = _message(file, "Features", ("feature", 1, _FIELD.TYPE_MESSAGE, repeated, "Features.FeatureEntry"))
    entry = _message(features, "FeatureEntry", ("key", 1, _FIELD.TYPE_STRING, optional, None),
                     ("value", 2, _FIELD.TYPE_MESSAGE, optional, "Feature"))
    entry.options.map_entry = True  # what `map<string, Feature>` compiles to
    _message(file, "Example", ("features", 1, _FIELD.TYPE_MESSAGE, optional, "Features"))
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


BytesList = _class("BytesList")
FloatList = _class("FloatList")
Int64List = _class("Int64List")
Feature = _class("Feature")
Features = _class("Features")
Example = _class("Example")
