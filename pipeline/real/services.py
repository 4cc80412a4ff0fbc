"""Starts the local stand-in services (the OpenAI-compatible LLM and the CRM/orders/ticketing service)
as real HTTP servers on 127.0.0.1, on ports the OS picks, in a background thread with its own event
loop: they never compete with the call loop for its time slices, and they stop with `close()`."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from pipeline.real.integration_service import create_integration_app
from pipeline.real.llm_server import LatencyProfile, create_llm_app


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass
class LocalServices:
    llm_profile: LatencyProfile = field(default_factory=LatencyProfile)
    llm_url: str = ""
    integrations_url: str = ""

    def __post_init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._servers: list[uvicorn.Server] = []
        self.llm_app = create_llm_app(self.llm_profile)
        self.integration_app = create_integration_app()

    def start(self, timeout_s: float = 10.0) -> LocalServices:
        socks = [_bound_socket(), _bound_socket()]
        self.llm_url = f"http://127.0.0.1:{socks[0].getsockname()[1]}"
        self.integrations_url = f"http://127.0.0.1:{socks[1].getsockname()[1]}"
        for app in (self.llm_app, self.integration_app):
            cfg = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
            self._servers.append(uvicorn.Server(cfg))
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(self._servers, socks)]
                while not all(s.started for s in self._servers):
                    await asyncio.sleep(0.01)
                ready.set()
                await asyncio.gather(*tasks)

            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="voxwatch-local-services", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError("local LLM / integration services did not start")
        return self

    def close(self) -> None:
        for s in self._servers:
            s.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
