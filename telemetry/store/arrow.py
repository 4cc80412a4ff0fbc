"""Schema-aware conversion of column data to Arrow, the fastest way into chdb (`FROM Python(tbl)`)."""

from __future__ import annotations

import pyarrow as pa

_SCALARS = {
    "String": pa.string(),
    "Float64": pa.float64(),
    "Float32": pa.float32(),
    "Int64": pa.int64(),
    "Int32": pa.int32(),
    "Int16": pa.int16(),
    "Int8": pa.int8(),
    "UInt64": pa.uint64(),
    "UInt32": pa.uint32(),
    "UInt16": pa.uint16(),
    "UInt8": pa.uint8(),
}


def arrow_type(ch_type: str) -> pa.DataType:
    if ch_type.startswith("Array("):
        return pa.list_(arrow_type(ch_type[len("Array(") : -1]))
    try:
        return _SCALARS[ch_type]
    except KeyError:
        raise TypeError(f"no Arrow mapping for ClickHouse type {ch_type}") from None
