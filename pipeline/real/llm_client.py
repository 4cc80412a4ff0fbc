"""The response engine's real backend: an OpenAI-compatible chat-completions client over HTTP (httpx).

Streaming (`stream: true`, server-sent events) is the default so that the time to first token is
measured where it happens. When the turn has a streamed reply (`TurnWork.reply`, the voice agent's
speaker), every token is handed to it as it arrives, so speech starts on the first clause; the whole
reply is still returned for the record, the cache and the history.
Any OpenAI-compatible server works (vLLM, llama.cpp server, a hosted API); the default is the local
stand-in in `pipeline.real.llm_server`.
"""

from __future__ import annotations

import json
import time

import httpx

from pipeline.engines import EngineError, ResponseRequest, ResponseText
from pipeline.work import current_work

SYSTEM_PROMPT = (
    "You are the voice agent of a retailer's customer service line. Answer in one or two short spoken "
    "sentences, using only the facts given. Never invent order details."
)


def build_messages(request: ResponseRequest) -> list[dict]:
    facts = json.dumps(request.facts, default=str, separators=(",", ":"))
    system = f"{SYSTEM_PROMPT}\nintent: {request.intent}\nfacts: {facts}"
    messages = [{"role": "system", "content": system}]
    messages += [{"role": m.role, "content": m.content} for m in request.history]
    messages.append({"role": "user", "content": request.text})
    return messages


class OpenAIChatEngine:
    """`ResponseEngine` over `POST {base_url}/v1/chat/completions`."""

    name = "openai-chat"

    def __init__(
        self,
        base_url: str,
        model: str = "voxwatch-template-1",
        api_key: str | None = None,
        stream: bool = True,
        timeout_s: float = 10.0,
        max_connections: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.stream = stream
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def generate(self, request: ResponseRequest) -> ResponseText:
        work = current_work()
        started = time.time()
        try:
            return await self._generate(request, None if work is None else work.reply)
        finally:
            if work is not None:
                work.note("response", started, time.time(), model=self.model)

    async def _generate(self, request: ResponseRequest, reply) -> ResponseText:
        body = {"model": self.model, "messages": build_messages(request), "max_tokens": request.max_tokens, "stream": self.stream}
        t0 = time.perf_counter()
        try:
            if not self.stream:
                resp = await self._client.post("/v1/chat/completions", json=body)
                self._check(resp)
                data = resp.json()
                usage = data.get("usage") or {}
                elapsed = time.perf_counter() - t0
                return ResponseText(
                    data["choices"][0]["message"]["content"], elapsed,
                    usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), data.get("model", self.model),
                )
            parts: list[str] = []
            ttft = 0.0
            usage: dict = {}
            model = self.model
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    self._check(resp)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    model = chunk.get("model", model)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices", []):
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if not parts:
                                ttft = time.perf_counter() - t0
                            parts.append(content)
                            if reply is not None:
                                reply.feed(content)
            return ResponseText("".join(parts), ttft, usage.get("prompt_tokens", 0), usage.get("completion_tokens", len(parts)), model)
        except httpx.TimeoutException as exc:
            raise EngineError(f"LLM backend timed out: {exc}", kind="timeout") from exc
        except httpx.TransportError as exc:
            raise EngineError(f"LLM backend unreachable: {exc}", kind="unavailable") from exc
        except (KeyError, ValueError) as exc:
            raise EngineError(f"LLM backend sent a malformed response: {exc}", retryable=False) from exc

    @staticmethod
    def _check(resp: httpx.Response) -> None:
        if resp.status_code != 200:
            raise EngineError(
                f"LLM backend answered {resp.status_code}: {resp.text[:200]}",
                kind="rejected" if resp.status_code < 500 else "unavailable",
                retryable=resp.status_code >= 500 or resp.status_code == 429,
            )
