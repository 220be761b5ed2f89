#!/usr/bin/env python3
"""Independent Sparkplug B decoder for the integration tests.

Decodes with Google's protobuf runtime (`pip install protobuf`) and the Sparkplug B `Payload`
schema (Eclipse Sparkplug 3.0 / Eclipse Tahu sparkplug_b.proto, proto2) declared here field by
field; none of the gateway's code is used.

stdin: JSON list of {"topic": ..., "hex": payload as hex}; stdout: JSON list of decoded messages.
`--rebirth`: print the hex of an NCMD payload with "Node Control/Rebirth" = true instead.
"""
import json
import sys
import time

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED


def add(msg, name, number, ftype, label=OPT, type_name=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name


def payload_class():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="sparkplug_b_test.proto", package="spb", syntax="proto2")
    p = fdp.message_type.add(name="Payload")
    pv = p.nested_type.add(name="PropertyValue")
    add(pv, "type", 1, F.TYPE_UINT32)
    add(pv, "is_null", 2, F.TYPE_BOOL)
    add(pv, "int_value", 3, F.TYPE_UINT32)
    add(pv, "long_value", 4, F.TYPE_UINT64)
    add(pv, "float_value", 5, F.TYPE_FLOAT)
    add(pv, "double_value", 6, F.TYPE_DOUBLE)
    add(pv, "boolean_value", 7, F.TYPE_BOOL)
    add(pv, "string_value", 8, F.TYPE_STRING)
    ps = p.nested_type.add(name="PropertySet")
    add(ps, "keys", 1, F.TYPE_STRING, REP)
    add(ps, "values", 2, F.TYPE_MESSAGE, REP, ".spb.Payload.PropertyValue")
    m = p.nested_type.add(name="Metric")
    add(m, "name", 1, F.TYPE_STRING)
    add(m, "alias", 2, F.TYPE_UINT64)
    add(m, "timestamp", 3, F.TYPE_UINT64)
    add(m, "datatype", 4, F.TYPE_UINT32)
    add(m, "is_historical", 5, F.TYPE_BOOL)
    add(m, "is_transient", 6, F.TYPE_BOOL)
    add(m, "is_null", 7, F.TYPE_BOOL)
    add(m, "properties", 9, F.TYPE_MESSAGE, OPT, ".spb.Payload.PropertySet")
    add(m, "int_value", 10, F.TYPE_UINT32)
    add(m, "long_value", 11, F.TYPE_UINT64)
    add(m, "float_value", 12, F.TYPE_FLOAT)
    add(m, "double_value", 13, F.TYPE_DOUBLE)
    add(m, "boolean_value", 14, F.TYPE_BOOL)
    add(m, "string_value", 15, F.TYPE_STRING)
    add(p, "timestamp", 1, F.TYPE_UINT64)
    add(p, "metrics", 2, F.TYPE_MESSAGE, REP, ".spb.Payload.Metric")
    add(p, "seq", 3, F.TYPE_UINT64)
    add(p, "uuid", 4, F.TYPE_STRING)
    add(p, "body", 5, F.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("spb.Payload"))


def prop_value(v):
    for k in ("int_value", "long_value", "double_value", "boolean_value", "string_value"):
        if v.HasField(k):
            return getattr(v, k)
    return None


def metric(m):
    out = {}
    for k in ("name", "alias", "timestamp", "datatype", "is_null", "long_value",
              "double_value", "boolean_value", "string_value"):
        if m.HasField(k):
            out[k] = getattr(m, k)
    if m.HasField("properties"):
        out["properties"] = {
            k: prop_value(v) for k, v in zip(m.properties.keys, m.properties.values)}
    return out


def main():
    Payload = payload_class()
    if "--rebirth" in sys.argv:
        p = Payload(timestamp=int(time.time() * 1000))
        m = p.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=True)
        m.timestamp = p.timestamp
        print(p.SerializeToString().hex())
        return
    out = []
    for msg in json.load(sys.stdin):
        p = Payload()
        p.ParseFromString(bytes.fromhex(msg["hex"]))
        d = {"topic": msg["topic"], "timestamp": p.timestamp,
             "metrics": [metric(m) for m in p.metrics]}
        if p.HasField("seq"):
            d["seq"] = p.seq
        out.append(d)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
