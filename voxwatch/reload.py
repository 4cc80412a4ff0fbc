"""Reloading the operator's configuration without a restart (SIGHUP, `POST /-/reload`).

The new config file and everything it names are loaded and checked first; only when all of it is
valid does anything change: the API's settings (tokens, limits, caller endpoint, external URL) are
swapped, and the alert engine takes the new rule set on its own event loop, keeping the state of
every alert whose rule still exists. A bad config is refused whole and the running one stays. The
outcome is exported as Prometheus does: `voxwatch_config_last_reload_successful` (1/0) and
`voxwatch_config_last_reload_success_timestamp_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from voxwatch.config import ConfigError, load_settings
from voxwatch.config_rules import external_url, load_ruleset

log = logging.getLogger(__name__)

# these are bound at start (the store is open, the sockets listen): a change needs a restart
RESTART_ONLY = ("store", "host", "port", "dashboard_port", "ingest")


@dataclass
class ReloadResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)  # fields that changed but wait for a restart
    rules: int = 0

    def as_dict(self) -> dict:
        return {"status": "success" if self.ok else "error", "problems": self.problems,
                "restart_needed": self.restart_needed, "rules": self.rules}


class Reloader:
    """Owns "load the config again": `load()` (settings + rule set, or ConfigError), `reload()`."""

    def __init__(self, ctx, config_path: str | None, overrides: dict | None = None, env=None) -> None:
        self.ctx = ctx
        self.config_path = config_path
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.env = env
        self.engine_loop: asyncio.AbstractEventLoop | None = None  # set by the monitoring thread
        self.monitoring = None  # the MonitoringLoop, whose anomaly feed follows the rules
        self._lock = threading.Lock()
        tel = ctx.telemetry
        self._ok_gauge = tel["voxwatch_config_last_reload_successful"] if getattr(tel, "enabled", False) else None
        self._ts_gauge = tel["voxwatch_config_last_reload_success_timestamp_seconds"] if self._ok_gauge else None

    def load(self):
        """(settings, ruleset) from the file and the command line's overrides; ConfigError if not valid."""
        settings = load_settings(self.config_path, env=self.env, **self.overrides)
        ruleset = load_ruleset(settings, self.config_path or "config", env=self.env)
        return settings, ruleset

    def loaded(self, ok: bool) -> None:
        if self._ok_gauge is not None:
            self._ok_gauge.set(1 if ok else 0)
            if ok:
                self._ts_gauge.set(time.time())

    def reload(self) -> ReloadResult:
        with self._lock:
            try:
                settings, ruleset = self.load()
            except ConfigError as exc:
                self.loaded(False)
                log.error("config reload refused, the running config stays: %s", exc)
                return ReloadResult(False, exc.problems)
            old = self.ctx.settings
            changed = [f for f in RESTART_ONLY if old is not None and getattr(settings, f) != getattr(old, f)]
            if old is not None:
                keep = {f: getattr(old, f) for f in RESTART_ONLY}
                if not settings.tokens:  # tokens generated at start (printed then) stay valid
                    keep["tokens"] = old.tokens
                settings = settings.model_copy(update=keep)
            engine = self.ctx.alerts
            if engine is not None:
                url = external_url(settings)
                try:
                    self._on_engine_loop(engine, ruleset, url)
                except Exception as exc:  # the engine refused it: nothing was swapped
                    self.loaded(False)
                    log.exception("config reload: the alert engine could not take the new rules")
                    return ReloadResult(False, [f"alert engine: {type(exc).__name__}: {exc}"])
            self.ctx.settings = settings
            self.loaded(True)
            if changed:
                log.warning("config reload: %s changed; that takes a restart", ", ".join(changed))
            log.info("config reloaded: %d rules", len(ruleset.rules()))
            return ReloadResult(True, [], changed, len(ruleset.rules()))

    def _on_engine_loop(self, engine, ruleset, url: str) -> None:
        def apply() -> None:
            engine.external_url = url
            engine.apply_ruleset(ruleset)
            if self.monitoring is not None:
                from voxwatch.loop import anomaly_feed_metrics

                self.monitoring.feed = anomaly_feed_metrics(ruleset, self.monitoring.catalog)

        loop = self.engine_loop
        if loop is None or not loop.is_running():
            apply()
            return

        async def on_loop() -> None:
            apply()

        # the engine lives on the monitoring thread's loop: change it there, between two ticks
        asyncio.run_coroutine_threadsafe(on_loop(), loop).result(timeout=30)
