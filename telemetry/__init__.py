"""Telemetry, the ground floor: the metric catalog, instruments, per-call traces, the snapshotter, the
sink and the store. Callers import from here, not from deep paths:

    from telemetry import Telemetry, Snapshotter, default_catalog
"""

from telemetry.catalog import Catalog, CatalogError, MetricSpec, default_catalog, load_catalog
from telemetry.clock import Clock, VirtualClock, WallClock
from telemetry.instruments import DisabledTelemetry, Telemetry
from telemetry.runtime import RuntimeMonitor
from telemetry.snapshot import Snapshotter, series_fingerprint
from telemetry.wiring import Runtime, open_runtime

__all__ = [
    "Catalog",
    "CatalogError",
    "Clock",
    "DisabledTelemetry",
    "MetricSpec",
    "Runtime",
    "RuntimeMonitor",
    "Snapshotter",
    "Telemetry",
    "VirtualClock",
    "WallClock",
    "default_catalog",
    "load_catalog",
    "open_runtime",
    "series_fingerprint",
]
