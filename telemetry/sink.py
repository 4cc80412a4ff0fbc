"""The sink: a background writer that batches rows into the store and never loses them quietly.

Producers call `write` / `write_columns` (cheap: validate, append). A writer thread flushes each
table by size or by interval. When the store is unreachable, batches are spooled to disk as Arrow
files and replayed, oldest first, once it answers again; a spooled file is deleted only after its
insert succeeded, so each row arrives once. Memory is bounded: past `max_buffer_rows` buffered rows,
batches go straight to the spool. A row that cannot be stored (wrong type, NaN where the schema
forbids it) is rejected alone, with a logged reason; the rest of its batch is kept.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from telemetry.store.base import Store, StoreError, StoreUnavailable
from telemetry.store.schema import TABLES_BY_NAME, Column

log = logging.getLogger(__name__)



@dataclass
class SinkStats:
    """Row counts per table; the same numbers go to the catalog's sink metrics when telemetry is given."""

    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    spooled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    replayed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected_reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    store_errors: int = 0

    def total(self, kind: str) -> int:
        return sum(getattr(self, kind).values())


def _reason_code(why: str) -> str:
    """The catalog's reason label for a rejection message (bounded cardinality, unlike the message)."""
    if "non-finite" in why:
        return "non_finite"
    if "refused by the store" in why:
        return "store_refused"
    return "bad_type"


def _validate(table: str, columns: list[Column], data: Mapping[str, object], n: int):
    """Coerce columns to their schema types; return (clean columns, keep mask, reasons per rejected row)."""
    keep = np.ones(n, dtype=bool)
    reasons: dict[int, str] = {}
    out: dict[str, object] = {}

    def reject(mask: np.ndarray, why: str) -> None:
        for i in np.flatnonzero(mask & keep):
            reasons[int(i)] = why
        keep[mask] = False

    for c in columns:
        if c.name not in data:
            continue
        v = data[c.name]
        t = c.type
        if t.startswith(("Float", "Int", "UInt")):
            arr = np.asarray(v)
            if arr.dtype.kind not in "fiub":
                arr = np.asarray(v, dtype=object)  # mixed input: judge each value on its own
                coerced = np.empty(n, dtype=np.float64)
                bad = np.zeros(n, dtype=bool)
                for i, x in enumerate(arr):
                    try:
                        if isinstance(x, (str, bytes)) or x is None:
                            raise TypeError
                        coerced[i] = float(x)
                    except (TypeError, ValueError):
                        coerced[i] = 0.0
                        bad[i] = True
                reject(bad, f"{c.name}: not a number")
                arr = coerced
            if t.startswith("Float"):
                arr = arr.astype(np.float64, copy=False)
                if c.finite:
                    reject(~np.isfinite(arr), f"{c.name}: non-finite value")
            else:
                if arr.dtype.kind == "f":
                    reject(~np.isfinite(arr), f"{c.name}: non-finite value for an integer column")
                    arr = np.where(np.isfinite(arr), arr, 0)
                arr = arr.astype(np.uint64 if t.startswith("UInt") else np.int64, copy=False)
            out[c.name] = arr
        elif t == "String":
            arr = np.asarray(v, dtype=object)
            bad = np.fromiter((x is None for x in arr), dtype=bool, count=n)
            if bad.any():
                reject(bad, f"{c.name}: missing string")
                arr = np.where(bad, "", arr)
            out[c.name] = arr
        elif t.startswith("Array("):
            lst = list(v)
            bad = np.fromiter((not isinstance(x, (list, tuple, np.ndarray)) for x in lst), dtype=bool, count=n)
            if bad.any():
                reject(bad, f"{c.name}: not a list")
                lst = [[] if b else x for x, b in zip(lst, bad, strict=True)]
            out[c.name] = lst
        else:
            out[c.name] = v
    return out, keep, reasons


def default_spool_dir(store: Store) -> Path:
    """The spool belongs to its store, so a batch is never replayed into a different one.

    Embedded: beside the data folder (`<folder>.spool/<database>`). Server: under
    `$VOXWATCH_SPOOL` (default ./var/spool), in a folder named after host, port and database."""
    path = getattr(store, "path", None)
    database = getattr(store, "database", "voxwatch")
    if path:
        return Path(f"{os.path.abspath(path)}.spool") / database
    root = Path(os.environ.get("VOXWATCH_SPOOL", "./var/spool"))
    where = f"{getattr(store, 'host', 'store')}_{getattr(store, 'port', '')}_{database}"
    return root / re.sub(r"[^A-Za-z0-9_.-]", "_", where)


class Sink:
    """Asynchronous, batched, lossless writer into a `Store`.

    The writer thread never dies: an unreadable spool file is quarantined with its reason, a spool
    write that fails keeps the batch in memory and is retried, and any other fault in a round is
    logged, counted and retried after a back-off."""

    def __init__(
        self,
        store: Store,
        spool_dir: str | os.PathLike | None = None,
        max_batch_rows: int = 200_000,
        flush_interval: float = 1.0,
        max_buffer_rows: int = 2_000_000,
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
        telemetry=None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.spool_dir = Path(spool_dir) if spool_dir else default_spool_dir(store)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = self.spool_dir / "quarantine"
        self.max_batch_rows = max_batch_rows
        self.flush_interval = flush_interval
        self.max_buffer_rows = max_buffer_rows
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.telemetry = telemetry
        self.on_error = on_error
        self.stats = SinkStats()
        self._pending: dict[str, list[pa.Table]] = defaultdict(list)  # table -> validated Arrow batches
        # Batches that failed mid-write keep their identity: written again first, under the same id.
        self._held: list[tuple[str, pa.Table, str]] = []
        self._pending_rows = 0
        self._inflight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._flush_requested = False
        self._store_down_until = 0.0
        self._backoff = retry_initial
        self._seq = 0
        self._retry_after = 0.0  # after an internal fault or a failed spool write: wait, then retry
        # Batches spooled by an earlier process (a crash, an outage at shutdown) are replayed first.
        self._spool_nonempty = bool(self.spooled_files())
        self._thread = threading.Thread(target=self._run, name="voxwatch-sink", daemon=True)
        self._thread.start()

    # -- producer side ---------------------------------------------------------------------------
    def write(self, table: str, rows: Iterable[Mapping[str, object]]) -> int:
        """Queue dict rows. Returns the number of rows accepted (rejected rows are counted and logged)."""
        rows = list(rows)
        if not rows:
            return 0
        names = {k for r in rows for k in r}
        return self.write_columns(table, {k: [r.get(k) for r in rows] for k in names})

    def write_columns(self, table: str, columns: Mapping[str, object]) -> int:
        """Queue a batch given as columns (numpy arrays or lists of equal length)."""
        t = TABLES_BY_NAME.get(table)
        if t is None:
            raise StoreError(f"sink: unknown table {table!r}")
        stored = t.stored_columns()
        known = {c.name for c in stored}
        unknown = set(columns) - known
        if unknown:
            raise StoreError(f"sink: table {table} has no column(s) {', '.join(sorted(unknown))}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise StoreError(f"sink: columns of {table} have different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        if n == 0:
            return 0
        clean, keep, reasons = _validate(table, stored, columns, n)
        if reasons:
            self._count_rejected(table, reasons)
            idx = np.flatnonzero(keep)
            clean = {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in clean.items()}
            n = len(idx)
            if n == 0:
                return 0
        # Arrow from numpy is zero-copy for numbers; batches then concatenate and slice without copies.
        return self._enqueue(table, self.store.batch(table, clean), n)

    def write_typed(self, table: str, columns: Mapping[str, object]) -> int:
        """Queue a batch a row builder made already in the table's types (numpy numbers, lists of str,
        Arrow arrays; e.g. `span_columns` in its columnar form): converted to Arrow as it is, without
        write_columns' value-by-value checks. A column of the wrong type is refused whole (StoreError)."""
        if table not in TABLES_BY_NAME:
            raise StoreError(f"sink: unknown table {table!r}")
        tbl = self.store.batch(table, columns)  # checks names and lengths; a wrong type cannot convert
        return self._enqueue(table, tbl, tbl.num_rows) if tbl.num_rows else 0

    def _enqueue(self, table: str, tbl: pa.Table, n: int) -> int:
        with self._cond:
            over = self._pending_rows + n > self.max_buffer_rows
            if not over:
                self._pending[table].append(tbl)
                self._pending_rows += n
                if sum(t.num_rows for t in self._pending[table]) >= self.max_batch_rows:
                    self._cond.notify_all()
        if over:
            # Memory is bounded: past the limit the batch goes to disk and is replayed in order.
            try:
                self._spool(table, tbl)
            except OSError as exc:
                # Both the store and the disk refuse: keep the rows (over the bound) rather than lose them.
                self._spool_failed(table, tbl, exc)
        return n

    def _count_rejected(self, table: str, reasons: dict[int, str]) -> None:
        by_reason: dict[str, int] = defaultdict(int)
        for why in reasons.values():
            by_reason[why] += 1
        for why, k in by_reason.items():
            log.warning("sink: rejected %d row(s) of %s: %s", k, table, why)
            self.stats.rejected[table] += k
            self.stats.rejected_reasons[f"{table}: {why}"] += k
            self._metric("voxwatch_sink_rows_rejected_total", k, table=table, reason=_reason_code(why))

    def _metric(self, name: str, n: int, **labels) -> None:
        if self.telemetry is not None and n:
            m = self.telemetry[name]
            (m.labels(**labels) if labels else m).inc(n)

    def _gauges(self) -> None:
        """Queue depth, spool size and store health, refreshed by the writer thread each round."""
        if self.telemetry is None:
            return
        tel = self.telemetry
        tel["voxwatch_sink_queue_rows"].set(self._pending_rows)
        tel["voxwatch_sink_queue_capacity_rows"].set(self.max_buffer_rows)
        tel["voxwatch_sink_spool_bytes"].set(sum(p.stat().st_size for p in self.spooled_files()) if self._spool_nonempty else 0)
        tel["voxwatch_sink_store_up"].set(0 if time.monotonic() < self._store_down_until else 1)

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def spooled_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.arrow"))

    # -- control ---------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until every row buffered so far is in the store or safely in the spool."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._pending_rows or self._inflight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"sink: flush timed out with {self._pending_rows} rows pending")
                self._cond.wait(remaining if remaining is not None else 0.5)

    def drain(self, timeout: float = 60.0) -> None:
        """Flush, then wait until the spool is replayed too (the store must be reachable)."""
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        while self.spooled_files():
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink: {len(self.spooled_files())} spooled batch(es) not replayed yet")
            with self._cond:
                self._store_down_until = 0.0  # try now rather than after the backoff
                self._cond.notify_all()
            time.sleep(0.05)

    def close(self, timeout: float = 60.0) -> None:
        """Flush and stop the writer. If the store does not take the rest within `timeout`, what is
        still buffered goes to the spool (replayed by the next process) and TimeoutError says so."""
        try:
            self.flush(timeout)
        except TimeoutError:
            spooled = self._spool_pending()
            raise TimeoutError(f"sink: the store did not take the last rows within {timeout:g} s; "
                               f"{spooled} row(s) spooled for the next start") from None
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    big = any(sum(t.num_rows for t in v) >= self.max_batch_rows for v in self._pending.values())
                    if big or self._flush_requested or now >= next_flush:
                        break
                    if self._spool_nonempty and now >= self._store_down_until:
                        break
                    self._cond.wait(max(0.0, min(next_flush - now, 0.25)))
                if self._stopping and not self._pending_rows:
                    return
                batches = self._take_batches()
                self._flush_requested = False
                self._inflight += len(batches)
            next_flush = time.monotonic() + self.flush_interval
            for table, batch, batch_id in batches:
                try:
                    self._write_or_spool(table, batch, batch_id)
                except Exception as exc:  # noqa: BLE001 - the writer must outlive any one fault
                    self._internal_fault("write", exc)
                    self._hold(table, batch, batch_id)
                finally:
                    with self._cond:
                        self._inflight -= 1
                        self._cond.notify_all()
            for step, fn in (("replay", self._replay_spool), ("gauges", self._gauges)):
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    self._internal_fault(step, exc)
            with self._cond:
                self._cond.notify_all()
                wait = self._retry_after - time.monotonic()
                if wait > 0 and not self._stopping:
                    self._cond.wait(wait)

    def _take_batches(self) -> list[tuple[str, pa.Table, str]]:
        """(table, batch, batch id) to write this round. The id is the batch's identity from here on:
        its insert token, and its name in the spool, so a batch written twice is stored once."""
        out, self._held = self._held, []
        for _, batch, _ in out:
            self._pending_rows -= batch.num_rows
        for table, chunks in self._pending.items():
            if chunks:
                batch = chunks[0] if len(chunks) == 1 else pa.concat_tables(chunks)
                out.append((table, batch, uuid.uuid4().hex))
                self._pending_rows -= batch.num_rows
        self._pending.clear()
        return out

    def _write_or_spool(self, table: str, batch: pa.Table, batch_id: str) -> None:
        if time.monotonic() < self._store_down_until or self._spool_nonempty:
            # Keep order: while older batches wait in the spool, newer ones queue behind them.
            self._spool_or_hold(table, batch, batch_id)
            return
        t0 = time.perf_counter()
        try:
            n = self._insert_isolating_bad_rows(table, batch, batch_id)
            self._store_up()
            self.stats.written[table] += n
            self._metric("voxwatch_sink_rows_written_total", n, table=table)
            if self.telemetry is not None:
                self.telemetry["voxwatch_sink_flush_seconds"].labels(table=table).observe(time.perf_counter() - t0)
                self.telemetry["voxwatch_sink_batch_rows"].labels(table=table).observe(batch.num_rows)
        except StoreUnavailable as exc:
            self._metric("voxwatch_sink_write_errors_total", 1, table=table, kind="unreachable")
            self._store_down(exc)
            # The insert may have landed before the connection broke: the spooled copy keeps the id,
            # so its replay is recognised by the store rather than stored twice.
            self._spool_or_hold(table, batch, batch_id)

    def _insert_isolating_bad_rows(self, table: str, batch: pa.Table, token: str, replay: bool = False) -> int:
        """Insert under `token`; if the store refuses the data itself, bisect to reject only the
        offending rows (each half under a token derived from this one, so a replay repeats them).
        `replay`: the batch comes from the spool, so it may be stored already (the store checks).

        Returns the number of rows stored."""
        try:
            return self.store.insert(table, batch, dedup_token=token, replay=replay)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if batch.num_rows == 1:
                self._count_rejected(table, {0: f"refused by the store: {str(exc)[:200]}"})
                return 0
            mid = batch.num_rows // 2
            return self._insert_isolating_bad_rows(table, batch.slice(0, mid), f"{token}.0", replay) + \
                self._insert_isolating_bad_rows(table, batch.slice(mid), f"{token}.1", replay)

    def _store_down(self, exc: Exception) -> None:
        self.stats.store_errors += 1
        self._store_down_until = time.monotonic() + self._backoff
        log.warning("sink: store unavailable (%s); spooling, retry in %.1fs", exc, self._backoff)
        if self.on_error:
            self.on_error(str(exc))
        self._backoff = min(self._backoff * 2, self.retry_max)

    def _store_up(self) -> None:
        self._backoff = self.retry_initial
        self._store_down_until = 0.0

    # -- faults ----------------------------------------------------------------------------------
    def _internal_fault(self, step: str, exc: BaseException) -> None:
        log.error("sink: %s failed (%s: %s); the writer goes on and retries", step, type(exc).__name__, exc)
        self._metric("voxwatch_sink_spool_errors_total", 1, op=step)
        self._retry_after = time.monotonic() + max(self._backoff, self.retry_initial)

    def _hold(self, table: str, batch: pa.Table, batch_id: str) -> None:
        """Keep a batch (and its id) to be written, or spooled, first in the next round."""
        with self._cond:
            self._held.append((table, batch, batch_id))
            self._pending_rows += batch.num_rows

    def _spool_or_hold(self, table: str, batch: pa.Table, batch_id: str) -> None:
        try:
            self._spool(table, batch, batch_id)
        except OSError as exc:
            self._spool_failed(table, batch, exc)
            self._hold(table, batch, batch_id)

    def _spool_failed(self, table: str, batch: pa.Table, exc: OSError) -> None:
        log.error("sink: cannot spool %d row(s) of %s to %s (%s); kept in memory, retrying",
                  batch.num_rows, table, self.spool_dir, exc)
        self._metric("voxwatch_sink_spool_errors_total", 1, op="spool_write")
        self._retry_after = time.monotonic() + max(self._backoff, self.retry_initial)

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move an unreadable spool file aside with its reason; the rest of the spool goes on."""
        log.error("sink: spool file %s quarantined: %s", path.name, reason)
        self._metric("voxwatch_sink_spool_quarantined_total", 1, reason=_quarantine_code(reason))
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / path.name
        os.replace(path, target)
        (self.quarantine_dir / f"{path.name}.reason.txt").write_text(reason + "\n")

    def quarantined_files(self) -> list[Path]:
        return sorted(self.quarantine_dir.glob("*.arrow")) if self.quarantine_dir.exists() else []

    # -- spool -----------------------------------------------------------------------------------
    def _spool(self, table: str, batch: pa.Table, batch_id: str | None = None) -> None:
        # <time>-<seq>-<batch id>-<table>: the id (no dashes) is the insert token on replay
        self._seq += 1
        name = f"{time.time_ns():020d}-{self._seq:08d}-{batch_id or uuid.uuid4().hex}-{table}"
        self.spool_dir.mkdir(parents=True, exist_ok=True)  # the folder may have been removed meanwhile
        tmp = self.spool_dir / f"{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                with ipc.new_file(fh, batch.schema) as w:
                    w.write_table(batch)
                fh.flush()
                os.fsync(fh.fileno())  # on disk before it is named: a power cut leaves no empty .arrow
            os.replace(tmp, self.spool_dir / f"{name}.arrow")  # atomic: a crash leaves no half file
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.spool_dir)
        self.stats.spooled[table] += batch.num_rows
        self._metric("voxwatch_sink_rows_spooled_total", batch.num_rows, table=table)
        self._spool_nonempty = True

    def _read_spooled(self, path: Path) -> tuple[str, pa.Table, str] | None:
        try:
            _, _, batch_id, table = path.stem.split("-", 3)
            if table not in TABLES_BY_NAME:
                raise ValueError(f"unknown table {table!r} in the file name")
            with pa.memory_map(str(path), "r") as src:
                return table, ipc.open_file(src).read_all(), batch_id
        except FileNotFoundError:
            return None  # gone meanwhile (another replay, an operator): nothing to do
        except (OSError, IndexError, ValueError, pa.ArrowException) as exc:
            self._quarantine(path, f"{type(exc).__name__}: {exc}")
            return None

    def _spool_pending(self) -> int:
        """Move every buffered batch to the spool now (shutdown with a store that does not answer)."""
        with self._cond:
            batches = self._take_batches()
        rows = 0
        for table, batch, batch_id in batches:
            try:
                self._spool(table, batch, batch_id)
                rows += batch.num_rows
            except OSError as exc:
                self._spool_failed(table, batch, exc)
        return rows

    def _spooled_batch_stored(self, path: Path) -> None:
        """The store has the batch: its spool file goes. A process killed just before this line
        replays the batch on restart, and the store recognises it by its id (the insert token)."""
        path.unlink()

    def _replay_spool(self) -> None:
        files = self.spooled_files()
        self._spool_nonempty = bool(files)
        if not files or time.monotonic() < self._store_down_until:
            return
        for path in files:
            read = self._read_spooled(path)
            if read is None:
                continue
            table, batch, batch_id = read
            try:
                n = self._insert_isolating_bad_rows(table, batch, batch_id, replay=True)
            except StoreUnavailable as exc:
                self._metric("voxwatch_sink_write_errors_total", 1, table=table, kind="unreachable")
                self._store_down(exc)
                return
            self._spooled_batch_stored(path)
            self._store_up()
            self.stats.replayed[table] += n
            self._metric("voxwatch_sink_rows_replayed_total", n, table=table)
        self._spool_nonempty = bool(self.spooled_files())


def _quarantine_code(reason: str) -> str:
    if reason.startswith("ValueError: unknown table"):
        return "unknown_table"
    if reason.startswith(("ArrowInvalid", "ArrowException", "ArrowIOError")):
        return "unreadable"
    return "io_error"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
