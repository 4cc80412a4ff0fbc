"""Per-call conversation context: who is calling, what was said and meant, what was found out.

The response stage reads it to build the LLM's history; the handoff stage hands it to a human; the
call record is written from it when the call ends.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pipeline.engines import ChatMessage


@dataclass
class TurnRecord:
    turn: int
    caller: str
    intent: str
    reply: str = ""
    latency_ms: float = 0.0
    status: str = "ok"  # ok | error | handoff
    degradation_level: str = "NORMAL"


@dataclass
class CallContext:
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    origin_region: str = "primary"
    region: str = "primary"  # the region serving it now (may change on failover)
    language: str = "en"
    customer_id: str = ""
    channel: str = "webrtc"
    scenario: str = ""
    started_at: float = 0.0
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turns: list[TurnRecord] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # customer history, product info: stable mid-call
    misunderstandings: int = 0
    handoff_reason: str = ""
    levels_seen: set[str] = field(default_factory=set)
    ended: bool = False

    @property
    def intents(self) -> list[str]:
        return [t.intent for t in self.turns]

    def history(self, limit: int = 8) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        for t in self.turns[-limit:]:
            out.append(ChatMessage("user", t.caller))
            if t.reply:
                out.append(ChatMessage("assistant", t.reply))
        return out

    def transcript(self) -> list[dict[str, Any]]:
        return [{"turn": t.turn, "caller": t.caller, "agent": t.reply, "intent": t.intent} for t in self.turns]

    def transcript_text(self) -> str:
        return "\n".join(f"caller: {t.caller}\nagent: {t.reply}" for t in self.turns)
