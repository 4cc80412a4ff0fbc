"""Watch a Pipecat bot with Voxwatch, and let Voxwatch's degradation level act inside it.

Two lines in a bot (`pip install "voxwatch[pipecat]"`):

    from voxwatch.integrations.pipecat import DegradationProcessor, export_traces

    export_traces("http://voxwatch:8000", token=INGEST_TOKEN, service_name="pizza-bot")
    # ... PipelineTask(pipeline, enable_tracing=True, ...) as Pipecat documents, and in the pipeline,
    # between the user context aggregator and the LLM:
    #   DegradationProcessor("http://voxwatch:8000", token=INGEST_TOKEN, cached_reply="...")

`export_traces` is Pipecat's own `setup_tracing` with OpenTelemetry's OTLP/HTTP exporter pointed at
Voxwatch's `/v1/traces` (docs/ingest.md says how its spans are mapped). `DegradationProcessor`
long-polls `GET /v1/degradation/level` (ETag, `wait`) and applies the level to the frames that pass:

- NORMAL, REGION_FAILOVER: frames pass unchanged (failover is the operator's routing, not the bot's);
- CACHED_RESPONSES: a turn's LLM request (`LLMContextFrame`) is answered with `cached_reply` spoken by
  the TTS instead of calling the LLM;
- INTEGRATIONS_QUEUED: as NORMAL here, and `integrations_queued` is True for the bot's tools to read
  (queue the write, tell the caller it will be done);
- HUMAN_HANDOFF: the turn is answered with `handoff_reply` and `on_handoff` is called (transfer the call).

Each applied level is logged and counted in `applied` (level -> turns), so the bot's own behaviour
change is observable.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
from pipecat.frames.frames import EndFrame, Frame, LLMContextFrame, StartFrame, TTSSpeakFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

log = logging.getLogger(__name__)

LEVELS = ("NORMAL", "CACHED_RESPONSES", "INTEGRATIONS_QUEUED", "REGION_FAILOVER", "HUMAN_HANDOFF")


def export_traces(voxwatch_url: str, token: str, service_name: str = "pipecat", *, console: bool = False) -> bool:
    """Send this process's Pipecat traces to Voxwatch (OTLP/HTTP, protobuf, gzip). True when set up."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from pipecat.utils.tracing.setup import setup_tracing

    exporter = OTLPSpanExporter(endpoint=voxwatch_url.rstrip("/") + "/v1/traces",
                                headers={"Authorization": f"Bearer {token}"}, compression=Compression.Gzip)
    return setup_tracing(service_name=service_name, exporter=exporter, console_export=console)


class DegradationProcessor(FrameProcessor):
    """Follows Voxwatch's degradation level (long-poll) and applies it to each turn's LLM request."""

    def __init__(self, voxwatch_url: str, token: str, *, cached_reply: str = "Sorry, I can only give short answers right now.",
                 handoff_reply: str = "Let me transfer you to a colleague.",
                 on_handoff: Callable[[], Awaitable[None]] | None = None, wait_s: float = 30.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self._url = voxwatch_url.rstrip("/") + "/v1/degradation/level"
        self._headers = {"Authorization": f"Bearer {token}"}
        self.cached_reply, self.handoff_reply, self.on_handoff = cached_reply, handoff_reply, on_handoff
        self.wait_s = wait_s
        self.level = "NORMAL"
        self.state: dict = {}
        self.applied: Counter = Counter()
        self.changed = asyncio.Event()  # set on every level change (tests and bots may wait on it)
        self._task: asyncio.Task | None = None

    @property
    def integrations_queued(self) -> bool:
        return self.level in ("INTEGRATIONS_QUEUED", "REGION_FAILOVER", "HUMAN_HANDOFF")

    async def fetch(self, client: httpx.AsyncClient, etag: str | None = None, wait: float = 0.0) -> str | None:
        """One poll: the level now (no `etag`), or after it changes from `etag` (up to `wait` s). Returns the ETag."""
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
        r = await client.get(self._url, params={"wait": wait}, headers=headers)
        if r.status_code == 304:
            return etag
        if r.status_code != 200:
            raise httpx.HTTPStatusError(f"level endpoint answered {r.status_code}: {r.text[:200]}", request=r.request, response=r)
        self.state = r.json()
        level = self.state.get("level", "NORMAL")
        if level != self.level:
            log.info("voxwatch degradation level %s -> %s", self.level, level)
            self.level = level
            self.changed.set()
            self.changed = asyncio.Event()
        return r.headers.get("etag")

    async def follow(self, etag: str | None = None) -> None:
        """Long-poll the level until cancelled; errors back off and retry."""
        backoff = 0.5
        async with httpx.AsyncClient(timeout=self.wait_s + 10) as client:
            while True:
                try:
                    etag = await self.fetch(client, etag, self.wait_s if etag else 0.0)
                    backoff = 0.5
                except httpx.HTTPError as exc:
                    log.warning("voxwatch level poll failed: %s", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._task is None:
            # the level before the first turn, so a bot started during an incident degrades from its first answer
            etag = None
            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    etag = await self.fetch(client)
            except httpx.HTTPError as exc:
                log.warning("voxwatch level unknown at start (%s); assuming %s", exc, self.level)
            self._task = self.create_task(self.follow(etag), name="voxwatch-level")
        if isinstance(frame, EndFrame) and self._task is not None:
            await self.cancel_task(self._task)
            self._task = None
        if isinstance(frame, LLMContextFrame) and direction == FrameDirection.DOWNSTREAM:
            level = self.level
            if level == "CACHED_RESPONSES":
                self.applied[level] += 1
                await self.push_frame(TTSSpeakFrame(self.cached_reply), direction)
                return
            if level == "HUMAN_HANDOFF":
                self.applied[level] += 1
                await self.push_frame(TTSSpeakFrame(self.handoff_reply), direction)
                if self.on_handoff is not None:
                    await self.on_handoff()
                return
            self.applied[level] += 1
        await self.push_frame(frame, direction)

    async def cleanup(self):
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None
        await super().cleanup()
