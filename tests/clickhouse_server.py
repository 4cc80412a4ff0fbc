"""Start Debian's clickhouse-server (18.16) as a user process with its own config, ports and folder.

Used by the test fixtures (single node and a two-shard cluster) and by `voxwatch bench ingest`'s
server run. Nothing here touches the system service or /var/lib/clickhouse.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SERVER_BINARY_CANDIDATES = ("/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse")


def server_binary() -> str | None:
    for cand in SERVER_BINARY_CANDIDATES:
        if os.path.exists(cand):
            return cand
    return shutil.which("clickhouse-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_xml(clusters: dict[str, list[int]]) -> str:
    out = []
    for name, ports in clusters.items():
        shards = "".join(
            f"<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>" for p in ports
        )
        out.append(f"<{name}>{shards}</{name}>")
    return "".join(out)


CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/log/server.log</log><errorlog>{root}/log/server.err.log</errorlog>
    <size>100M</size><count>1</count></logger>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <interserver_http_port>{inter}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>1073741824</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>{root}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <remote_servers>{clusters}</remote_servers>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default>
    <readonly><readonly>1</readonly></readonly>
  </profiles>
  <users>
    <default><password></password><networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


class ClickHouseServer:
    """One server process. `start()` waits until it answers; `stop()` ends it; data stays in `root`."""

    def __init__(self, root: Path, clusters: dict[str, list[int]] | None = None, tcp_port: int | None = None):
        self.root = Path(root)
        self.tcp_port = tcp_port or free_port()
        self.http_port = free_port()
        self.inter_port = free_port()
        self.clusters = clusters or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/voxwatch"

    def write_config(self) -> Path:
        for d in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.xml"
        cfg.write_text(
            CONFIG.format(
                root=self.root, tcp=self.tcp_port, http=self.http_port, inter=self.inter_port,
                clusters=_cluster_xml(self.clusters),
            )
        )
        (self.root / "users.xml").write_text(USERS)
        return cfg

    def start(self, timeout: float = 60.0) -> ClickHouseServer:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("clickhouse-server is not installed (scripts/bootstrap.sh clickhouse-server)")
        cfg = self.write_config()
        args = [binary] if binary.endswith("clickhouse-server") else [binary, "server"]
        self.proc = subprocess.Popen(
            [*args, f"--config-file={cfg}"],
            cwd=self.root,
            stdout=open(self.root / "log" / "stdout.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited with {self.proc.returncode}: {self._log_tail()}")
            if self._answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"clickhouse-server did not answer on port {self.tcp_port} in {timeout}s: {self._log_tail()}")

    def _answers(self) -> bool:
        from clickhouse_driver import Client

        try:
            Client("127.0.0.1", port=self.tcp_port, connect_timeout=1).execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - still starting
            return False

    def _log_tail(self) -> str:
        texts = []
        for name in ("server.err.log", "stdout.log"):
            p = self.root / "log" / name
            if p.exists():
                texts.append(p.read_text(errors="replace")[-1500:])
        return " | ".join(texts)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
