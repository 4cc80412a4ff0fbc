"""The composition root's one call for telemetry's parts: the Telemetry, the sink and the store,
wired to each other in one place so no command can forget a piece (the sink's and the store's own
metrics need the Telemetry; the Telemetry's call records and spans need the sink).

    rt = open_runtime(clock=clock, store=url_or_store, spool_dir=..., source="api")
    rt.telemetry, rt.sink, rt.store
    ...
    rt.close()            # flushes the tracer and the sink, closes the sink (and the store if opened here)

`store=None` (or the URL "none") runs without a store: no sink either, metrics still recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from telemetry.clock import Clock
from telemetry.instruments import Telemetry


@dataclass
class Runtime:
    """Telemetry, sink and store of one process, wired."""

    telemetry: Telemetry
    sink: Any = None  # telemetry.sink.Sink, None without a store
    store: Any = None  # telemetry.store.Store
    owns_store: bool = False
    _closed: bool = field(default=False, repr=False)

    def flush(self) -> None:
        self.telemetry.flush()
        if self.sink is not None:
            self.sink.flush()

    def close(self) -> None:
        """Flush and close the sink; close the store when `open_runtime` opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.telemetry.flush()
        if self.sink is not None:
            self.sink.close()
        if self.owns_store and self.store is not None:
            self.store.close()


def open_runtime(*, clock: Clock | None = None, store: Any = None, migrate: bool = True,
                 spool_dir: str | os.PathLike | None = None, source: str = "store", seed: int | None = None,
                 trace_sample_ratio: float = 0.1, sink_options: dict | None = None) -> Runtime:
    """Build the Telemetry, and with a store (a `Store` or a URL) the sink writing into it; the sink and
    the store report their own metrics into that Telemetry, the store's queries under `source`."""
    from telemetry.sink import Sink
    from telemetry.store import open_store

    owns = isinstance(store, str)
    if owns and store.lower() == "none":
        store, owns = None, False
    if owns:
        store = open_store(store, migrate=migrate)
    sink = Sink(store, spool_dir=spool_dir, **(sink_options or {})) if store is not None else None
    tel = Telemetry(clock=clock, sink=sink, seed=seed, trace_sample_ratio=trace_sample_ratio)
    if sink is not None:
        sink.telemetry = tel  # the one place the sink learns where its metrics go
    if store is not None:
        store.telemetry, store.source = tel, source
    return Runtime(tel, sink, store, owns)


__all__ = ["Runtime", "open_runtime"]
