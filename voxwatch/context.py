"""What the composition root hands to the API routers: the shared resources of one running service.

Fields are optional because not every process runs every part (a read-only API needs only the store).
Routers receive this object; they never build their own store or clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telemetry.clock import Clock, WallClock


@dataclass
class AppContext:
    store: Any = None  # telemetry.store.Store
    sink: Any = None  # telemetry.sink.Sink
    clock: Clock = field(default_factory=WallClock)
    telemetry: Any = None  # telemetry instruments (prometheus registry behind it)
    pipeline: Any = None  # the running pipeline (degradation controller, edge) when this process has one
    alerts: Any = None  # the alert engine / silences when this process runs them
    anomaly: Any = None  # the anomaly service
    settings: Any = None  # voxwatch.config.Settings
    extras: dict[str, Any] = field(default_factory=dict)
