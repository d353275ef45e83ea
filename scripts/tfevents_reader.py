"""Reads TensorBoard event files without TensorFlow or TensorBoard, independently of sinklab's
C++ writer: TFRecord framing with both CRC-32C checks, and Event/Summary message classes that
protobuf builds at run time from a FileDescriptorProto made here (no protoc, no .proto file),
holding only the fields a scalar needs (protobuf wire numbers, as TensorBoard's event.proto and
summary.proto give them):

    Event          wall_time = 1 (double), step = 2 (int64),
                   oneof what { file_version = 3 (string), summary = 5 (Summary) }
    Summary        value = 1 (repeated Summary.Value)
    Summary.Value  tag = 1 (string), oneof value { simple_value = 2 (float) }

Other fields (graphs, images, plugin metadata) parse as unknown fields and are ignored.

CRC-32C comes from crcmod (Debian's python3-crcmod) when it is importable, else from
crc32c_own() below (a table built bit by bit from the reflected polynomial 0x82F63B78); both are
checked against the standard check value when this module loads. Needs protobuf (Debian's
python3-protobuf). Used by tests/tensorboard_test.sh and scripts/interop_tensorboard.py.
"""
import struct

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FILE_VERSION = "brain.Event:2"
CHECK_VALUE = 0xE3069283  # CRC-32C of b"123456789"


def _own_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _own_table()


def crc32c_own(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _crcmod_crc32c():
    try:
        import crcmod.predefined
    except ImportError:
        return None
    return crcmod.predefined.mkPredefinedCrcFun("crc-32c")


crc32c_crcmod = _crcmod_crc32c()
crc32c = crc32c_crcmod or crc32c_own
CRC_SOURCE = "crcmod" if crc32c_crcmod else "own table"
for _f in filter(None, (crc32c_own, crc32c_crcmod)):
    assert _f(b"123456789") == CHECK_VALUE, "CRC-32C check value failed: %r" % _f


def masked(crc):
    """TFRecord's mask: rotate right by 15 bits, add 0xa282ead8 (mod 2^32)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path, crc=None):
    """[(offset, data)] of every record in the file. Raises ValueError naming the file and the
    offset when a record is cut short or a CRC does not match."""
    crc = crc or crc32c
    with open(path, "rb") as f:
        blob = f.read()
    records, pos = [], 0
    while pos < len(blob):
        if len(blob) - pos < 12:
            raise ValueError("%s: torn record header at byte %d" % (path, pos))
        (length,) = struct.unpack_from("<Q", blob, pos)
        (length_crc,) = struct.unpack_from("<I", blob, pos + 8)
        if masked(crc(blob[pos:pos + 8])) != length_crc:
            raise ValueError("%s: length CRC mismatch at byte %d" % (path, pos))
        end = pos + 12 + length + 4
        if end > len(blob):
            raise ValueError("%s: record at byte %d runs past the end" % (path, pos))
        data = blob[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", blob, end - 4)
        if masked(crc(data)) != data_crc:
            raise ValueError("%s: data CRC mismatch at byte %d" % (path, pos))
        records.append((pos, data))
        pos = end
    return records


def _message_classes():
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="sinklab_tfevents_reader.proto", package="sinklab_tfevents_reader", syntax="proto3")
    summary = proto.message_type.add(name="Summary")
    value = summary.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    value.field.add(name="tag", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL,
                    oneof_index=0)
    summary.field.add(name="value", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=".sinklab_tfevents_reader.Summary.Value")
    event = proto.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    event.field.add(name="wall_time", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL,
                    oneof_index=0)
    event.field.add(name="summary", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    oneof_index=0, type_name=".sinklab_tfevents_reader.Summary")
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())  # in every protobuf 3.x to 6.x
    descriptor = pool.FindMessageTypeByName("sinklab_tfevents_reader.Event")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


Event = _message_classes()


def read_events(path, canonical=False, crc=None):
    """[(offset, data, Event)] of every record. canonical=True also requires each record to be
    exactly protobuf's own serialization of the fields above (no unknown fields, field order,
    proto3 defaults left out), as sinklab writes them; ValueError names the file and offset."""
    out = []
    for offset, data in read_records(path, crc):
        event = Event()
        event.ParseFromString(data)
        if canonical:
            clean = Event()
            clean.CopyFrom(event)
            clean.DiscardUnknownFields()
            again = clean.SerializeToString(deterministic=True)
            if again != data:
                raise ValueError("%s: the record at byte %d is not protobuf's serialization of "
                                 "its fields:\n  file     %s\n  protobuf %s"
                                 % (path, offset, data.hex(), again.hex()))
        out.append((offset, data, event))
    return out


def scalars(events):
    """{tag: [(step, wall_time, value)]} of the simple_value scalars, in file order."""
    out = {}
    for _, _, event in events:
        if event.WhichOneof("what") != "summary":
            continue
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                out.setdefault(value.tag, []).append(
                    (event.step, event.wall_time, value.simple_value))
    return out
