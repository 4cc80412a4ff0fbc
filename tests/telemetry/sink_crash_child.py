"""A writing process for the exactly-once test (tests/telemetry/test_sink_exactly_once.py).

    python -m tests.telemetry.sink_crash_child crash STORE_URL SPOOL N [--no-dedup]
        writes N calls through a Sink whose buffer bound sends every batch to the spool; the writer
        replays the spool and this process SIGKILLs itself right after the first replayed insert
        succeeded, before that batch's spool file is deleted.
    python -m tests.telemetry.sink_crash_child recover STORE_URL SPOOL N [--no-dedup]
        a fresh process on the same store and spool: replays what is left, then prints JSON with the
        row count, distinct ids and a checksum of the ids, and the checksum N distinct ids should have.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from telemetry.sink import Sink
from telemetry.store import open_store

BATCH = 100


class _KilledAfterInsert(Sink):
    all_written = threading.Event()

    def _replay_spool(self) -> None:
        self.all_written.wait()  # every batch is in the spool first, so N rows were handed over
        super()._replay_spool()

    def _spooled_batch_stored(self, path) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # the insert succeeded; the spool file is still there


def main(argv: list[str]) -> int:
    mode, url, spool, n = argv[0], argv[1], argv[2], int(argv[3])
    store = open_store(url)
    if "--no-dedup" in argv:  # the control run: the same crash without insert tokens or batch ledger
        class NoTokens(type(store.dialect)):
            def insert_settings(self, dedup_token):
                return {}

        class NoLedger(type(store)):
            batch_ledger = False

        store.dialect = NoTokens(store.dialect.name, modern=store.dialect.modern)
        store.__class__ = NoLedger
    if mode == "crash":
        sink = _KilledAfterInsert(store, spool_dir=spool, max_buffer_rows=0, flush_interval=0.05)
        for start in range(0, n, BATCH):
            ids = [f"call-{i}" for i in range(start, min(n, start + BATCH))]
            sink.write_columns("calls", {"call_id": ids, "started_ms": [1] * len(ids), "ended_ms": [2] * len(ids)})
        sink.all_written.set()
        sink.drain(60)  # never returns: the writer kills the process on its first replayed batch
        print("not killed", flush=True)
        return 1
    sink = Sink(store, spool_dir=spool, flush_interval=0.05)
    sink.drain(60)
    sink.close()
    got = store.query("SELECT count() AS rows, uniqExact(call_id) AS ids, sum(cityHash64(call_id)) AS checksum FROM calls")
    want = store.query("SELECT sum(cityHash64(concat('call-', toString(number)))) AS checksum FROM numbers({n:UInt64})",
                       {"n": n})
    print(json.dumps({"rows": int(got["rows"].iloc[0]), "ids": int(got["ids"].iloc[0]),
                      "checksum": str(got["checksum"].iloc[0]), "want_checksum": str(want["checksum"].iloc[0]),
                      "spooled_left": len(sink.spooled_files())}), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
