"""Silences: label matchers that mute alerts for a time, created and expired through this API and
kept in the `silences` table (newest row per id wins), so every process sees the same silences.

The matcher shape is Alertmanager's: `{name, value, isRegex, isEqual}`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts import tables

# A silence is a stop-gap while someone fixes the cause; longer than this is a disabled rule.
MAX_SILENCE_DAYS = 30


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1)
    value: str
    is_regex: bool = Field(False, alias="isRegex")
    is_equal: bool = Field(True, alias="isEqual")

    @model_validator(mode="after")
    def _regex_ok(self):
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regex {self.value!r}: not a valid regular expression ({exc})") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        return hit if self.is_equal else not hit

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


class SilenceError(ValueError):
    pass


@dataclass
class Silence:
    silence_id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    updated_at: float = 0.0
    extra: dict = field(default_factory=dict)

    def state(self, now: float) -> str:
        if now >= self.ends_at:
            return "expired"
        if now < self.starts_at:
            return "pending"
        return "active"

    def mutes(self, labels: dict[str, str], now: float) -> bool:
        return self.state(now) == "active" and all(m.matches(labels) for m in self.matchers)

    def as_dict(self, now: float) -> dict:
        return {
            "id": self.silence_id,
            "matchers": [m.as_dict() for m in self.matchers],
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": self.state(now)},
        }


def check_silence(matchers: list[Matcher], starts_at: float, ends_at: float, now: float) -> None:
    """The rules every new silence obeys, wherever it comes from (the query API, a tool, a test):
    a real time window, not already over, bounded, and not matching every alert. Times in seconds."""
    if not matchers:
        raise SilenceError("a silence needs at least one matcher")
    if ends_at <= starts_at:
        raise SilenceError(f"a silence must end after it starts: it ends ({ends_at:.3f}) before it starts ({starts_at:.3f})")
    if ends_at <= now:
        raise SilenceError("silence would already be over: its end is in the past")
    if ends_at - starts_at > MAX_SILENCE_DAYS * 86_400:
        raise SilenceError(f"silences may last at most {MAX_SILENCE_DAYS} days")
    if all(m.value == "" or (m.is_regex and re.fullmatch(m.value, "")) for m in matchers):
        raise SilenceError("a silence must have at least one matcher that does not match the empty string")


class Silences:
    """Create, expire and list silences; `mutes(labels)` says which active silences match."""

    def __init__(self, clock, writer=None, store=None) -> None:
        self.clock = clock
        self.writer = writer
        self.store = store
        self._by_id: dict[str, Silence] = {}
        if store is not None:
            self._load()

    def _load(self) -> None:
        for r in tables.silences(self.store).itertuples(index=False):
            self._by_id[r.silence_id] = Silence(
                silence_id=r.silence_id,
                matchers=[Matcher.model_validate(m) for m in json.loads(r.matchers_json or "[]")],
                starts_at=r.starts_ms / 1000.0,
                ends_at=r.ends_ms / 1000.0,
                created_by=r.created_by,
                comment=r.comment,
                created_at=r.created_ms / 1000.0,
                updated_at=r.updated_ms / 1000.0,
            )

    def _persist(self, s: Silence) -> None:
        now = self.clock.now()
        # updated_ms must grow even when two changes land in the same virtual millisecond
        s.updated_at = max(now, s.updated_at + 0.001)
        if self.writer is None:
            return
        self.writer.write(
            "silences",
            [
                {
                    "silence_id": s.silence_id,
                    "updated_ms": int(round(s.updated_at * 1000)),
                    "created_ms": int(s.created_at * 1000),
                    "starts_ms": int(s.starts_at * 1000),
                    "ends_ms": int(s.ends_at * 1000),
                    "created_by": s.created_by,
                    "comment": s.comment,
                    "matchers_json": json.dumps([m.as_dict() for m in s.matchers]),
                    "state": s.state(now),
                }
            ],
        )
        if hasattr(self.writer, "flush"):
            self.writer.flush()  # a silence must hold at once, also for the next process

    def create(
        self,
        matchers: list[dict | Matcher],
        ends_at: float | None = None,
        *,
        starts_at: float | None = None,
        duration: float | None = None,
        created_by: str = "",
        comment: str = "",
    ) -> str:
        now = self.clock.now()
        if not matchers:
            raise SilenceError("a silence needs at least one matcher")
        try:
            ms = [m if isinstance(m, Matcher) else Matcher.model_validate(m) for m in matchers]
        except ValidationError as exc:
            raise SilenceError("invalid matcher: " + "; ".join(e["msg"] for e in exc.errors())) from None
        except (TypeError, ValueError) as exc:
            raise SilenceError(f"invalid matcher: {exc}") from None
        starts = now if starts_at is None else float(starts_at)
        if ends_at is None:
            if duration is None:
                raise SilenceError("a silence needs ends_at or a duration")
            ends_at = starts + duration
        check_silence(ms, starts, float(ends_at), now)
        s = Silence(uuid.uuid4().hex, ms, starts, float(ends_at), created_by, comment, created_at=now)
        self._by_id[s.silence_id] = s
        self._persist(s)
        return s.silence_id

    def expire(self, silence_id: str) -> Silence:
        s = self._by_id.get(silence_id)
        if s is None:
            raise SilenceError(f"no silence {silence_id!r}")
        now = self.clock.now()
        if s.state(now) == "expired":
            raise SilenceError(f"silence {silence_id!r} is already expired")
        s.ends_at = now
        if s.starts_at > now:
            s.starts_at = now
        self._persist(s)
        return s

    def get(self, silence_id: str) -> Silence:
        try:
            return self._by_id[silence_id]
        except KeyError:
            raise SilenceError(f"no silence {silence_id!r}") from None

    def list(self, state: str | None = None) -> list[dict]:
        now = self.clock.now()
        out = [s.as_dict(now) for s in self._by_id.values()]
        if state:
            out = [d for d in out if d["status"]["state"] == state]
        return sorted(out, key=lambda d: d["startsAt"])

    def mutes(self, labels: dict[str, str]) -> list[str]:
        now = self.clock.now()
        return [s.silence_id for s in self._by_id.values() if s.mutes(labels, now)]
