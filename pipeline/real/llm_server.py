"""The local LLM backend: an OpenAI-compatible chat-completions server (FastAPI) that answers from the
knowledge base's templates with a realistic latency profile, so the protocol path is the real one.

`POST /v1/chat/completions` accepts the OpenAI request body; with `stream: true` it answers with
server-sent events (`data: {chunk}` lines, then `data: [DONE]`), one chunk per word, after a time to
first token drawn from a lognormal. The pipeline's client puts the intent and the looked-up facts in
the system message (`intent: NAME` and `facts: {json}` lines); that is what the templates read.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from pipeline.real.knowledge import find_product, load_knowledge, render_answer

MODEL_NAME = "voxwatch-template-1"


@dataclass
class LatencyProfile:
    """Time to first token (lognormal around the median) and time per further token."""

    ttft_median_s: float = 0.090
    ttft_sigma: float = 0.35
    per_token_s: float = 0.004
    seed: int = 7


class ChatMessageIn(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str = MODEL_NAME
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None


class FaultsIn(BaseModel):
    """Injected faults. Declared at module level: with postponed annotations a model defined inside
    the app factory is not resolvable by FastAPI, which then reads the body as a query parameter."""

    error_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: float = Field(0.0, ge=0)


_INTENT = re.compile(r"^intent:\s*(\S+)\s*$", re.M)
_FACTS = re.compile(r"^facts:\s*(\{.*\})\s*$", re.M)


def answer_for(messages: list[ChatMessageIn], kb: dict[str, Any]) -> str:
    system = "\n".join(m.content for m in messages if m.role == "system")
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    intent_m = _INTENT.search(system)
    intent = intent_m.group(1) if intent_m else "default"
    facts: dict[str, Any] = {}
    facts_m = _FACTS.search(system)
    if facts_m:
        try:
            facts = json.loads(facts_m.group(1))
        except json.JSONDecodeError:
            facts = {}
    if intent == "product_question" and not any(isinstance(v, dict) and "product" in v for v in facts.values()):
        product = find_product(user, kb)
        if product is not None:
            facts["catalog"] = product_facts(product)
    return render_answer(intent, facts, kb)


def product_facts(product: dict[str, Any]) -> dict[str, Any]:
    stock = int(product.get("stock", 0))
    return {
        "product": product["name"],
        "price": f"{float(product['price']):.0f}",
        "availability": f"we have {stock} in stock" if stock else "it is out of stock right now",
    }


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def create_llm_app(profile: LatencyProfile | None = None) -> FastAPI:
    profile = profile or LatencyProfile()
    rng = random.Random(profile.seed)
    kb = load_knowledge()
    app = FastAPI(title="Voxwatch local LLM (OpenAI-compatible)")
    app.state.requests = 0
    app.state.error_rate = 0.0  # injected faults (tests, demos): share of requests answered 503
    app.state.extra_latency_s = 0.0

    @app.post("/admin/faults")
    def set_faults(f: FaultsIn) -> dict:
        app.state.error_rate = f.error_rate
        app.state.extra_latency_s = f.latency_ms / 1000.0
        return {"error_rate": f.error_rate, "latency_ms": f.latency_ms}

    def ttft() -> float:
        return profile.ttft_median_s * rng.lognormvariate(0.0, profile.ttft_sigma)

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "voxwatch"}]}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if not any(m.role == "user" for m in req.messages):
            raise HTTPException(400, "messages must include a user message")
        app.state.requests += 1
        if app.state.error_rate and rng.random() < app.state.error_rate:
            raise HTTPException(503, "model overloaded (injected fault)")
        text = answer_for(req.messages, kb)
        tokens = _tokens(text)
        if req.max_tokens:
            tokens = tokens[: req.max_tokens]
        prompt_tokens = sum(len(m.content.split()) for m in req.messages)
        cid = f"chatcmpl-{uuid.uuid4().hex[:20]}"
        created = int(time.time())
        first_delay = ttft() + app.state.extra_latency_s
        if not req.stream:
            await asyncio.sleep(first_delay + profile.per_token_s * max(0, len(tokens) - 1))
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": MODEL_NAME,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)},
            }

        async def events():
            def chunk(delta: dict, finish: str | None = None) -> str:
                body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                return f"data: {json.dumps(body)}\n\n"

            await asyncio.sleep(first_delay)
            yield chunk({"role": "assistant", "content": tokens[0] if tokens else ""})
            for tok in tokens[1:]:
                await asyncio.sleep(profile.per_token_s)
                yield chunk({"content": tok})
            final = json.loads(chunk({}, "stop")[6:])
            final["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)}
            yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":  # pragma: no cover - `python -m pipeline.real.llm_server --port 8088`
    import argparse

    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8088)
    a = p.parse_args()
    uvicorn.run(create_llm_app(), host="127.0.0.1", port=a.port, log_level="warning")
