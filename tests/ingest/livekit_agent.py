"""A real LiveKit Agents session for the ingest tests, run without a LiveKit server: AgentSession in text
mode (`session.run(user_input=...)`) with LiveKit's OpenAI plugin against the project's OpenAI-compatible
stand-in, its own tracing (`livekit.agents.telemetry.set_tracer_provider`) exporting to Voxwatch over
OTLP/HTTP. Run as its own process; writes what its tracing produced as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from livekit.agents import Agent, AgentSession
from livekit.agents.telemetry import set_tracer_provider
from livekit.plugins import openai as lk_openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


async def converse(llm_url: str, inputs: list[str]) -> list[str]:
    llm = lk_openai.LLM(model="voxwatch-template-1", base_url=f"{llm_url}/v1", api_key="not-needed")
    replies = []
    async with AgentSession(llm=llm) as session:
        await session.start(Agent(instructions="You are the pizza shop's phone agent."))
        for text in inputs:
            result = await session.run(user_input=text)
            replies.append(str(result.events[-1]) if result.events else "")
    return replies


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--llm-url", required=True)
    p.add_argument("--voxwatch-url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    a = p.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": "lk-agent", "cloud.region": "eu-west"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=f"{a.voxwatch_url}/v1/traces", headers={"Authorization": f"Bearer {a.token}"})))
    ran = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(ran))
    set_tracer_provider(provider)
    replies = asyncio.run(converse(a.llm_url, a.inputs))
    provider.shutdown()
    spans = [{"name": s.name, "trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
              "duration_ms": (s.end_time - s.start_time) / 1e6,
              "attributes": {k: v for k, v in (s.attributes or {}).items() if isinstance(v, (int, float, str, bool))}}
             for s in ran.get_finished_spans()]
    Path(a.out).write_text(json.dumps({"replies": replies, "spans": spans}, default=str))


if __name__ == "__main__":
    main()
