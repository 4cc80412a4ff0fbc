"""Schema-aware conversion of column data to Arrow, the fastest way into chdb (`FROM Python(tbl)`)."""

from __future__ import annotations

import pyarrow as pa

from telemetry.store.schema import Column

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


def to_arrow(columns: list[Column], df) -> pa.Table:
    arrays = []
    for c in columns:
        values = df[c.name]
        values = values.to_numpy() if hasattr(values, "to_numpy") else values
        t = arrow_type(c.type)
        if pa.types.is_list(t):
            values = list(values)
        arrays.append(pa.array(values, type=t, from_pandas=True))
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])
