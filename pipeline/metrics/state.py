"""State recording: the gauges read from the pipeline's parts once per second (pools, circuits, caches,
the action queue, the handoff queue, regions, the degradation level) and the business ratios."""

from __future__ import annotations

import math

from pipeline.degradation import DegradationLevel
from pipeline.metrics.recorder import PROVIDER, Recorder


class StateRecording(Recorder):
    """Once per second: the gauges of pools, circuits, caches, queues, regions and the degradation level."""

    def pool_state(self, pool, busy: int, waiting: int) -> None:
        name = pool.service
        self.m("voxwatch_pool_connections_in_use", name).set(busy)
        self.m("voxwatch_pool_capacity_connections", name).set(pool.size)
        self.m("voxwatch_pool_max_connections", name).set(pool.config.max_size)
        self.m("voxwatch_pool_connections_idle", name).set(max(0, pool.size - busy))
        self.m("voxwatch_pool_pending_acquires", name).set(waiting)
        self.m("voxwatch_pool_saturation_ratio", name).set(pool.utilization)
        self.m("voxwatch_pool_leaked_connections", name).set(pool.leaked)
        if busy >= pool.usable and waiting > 0:
            self.m("voxwatch_pool_exhausted_seconds_total", name).inc(1.0)
        if pool.service == "llm":
            self.m("voxwatch_llm_inflight_requests", PROVIDER).set(busy)
            self.m("voxwatch_llm_concurrency_limit", PROVIDER).set(pool.size)
            # the provider's per-minute token quota, provisioned with the concurrency limit
            now = self._last_second or 0.0
            self._llm_tokens = [(t, k) for t, k in self._llm_tokens if t > now - 60]
            quota = pool.size * 40_000.0  # tokens per minute: a connection streams about 750 tokens/s flat out
            self.m("voxwatch_llm_quota_used_ratio", PROVIDER).set(min(1.0, sum(k for _, k in self._llm_tokens) / quota))
        else:
            self.m("voxwatch_integration_inflight_requests", name).set(busy)

    def circuit_state(self, dependency: str, state: int) -> None:
        self.m("voxwatch_circuit_state", dependency).set(state)

    def cache_state(self, cache) -> None:
        name = cache.name
        prev = self._cache_published.setdefault(name, {"hits": 0, "misses": 0, "evictions": 0, "expirations": 0})
        hits, misses = sum(cache.hits.values()), sum(cache.misses.values())
        dh, dm = hits - prev["hits"], misses - prev["misses"]
        self._inc("voxwatch_cache_hits_total", dh, name)
        self._inc("voxwatch_cache_misses_total", dm, name)
        self._inc("voxwatch_cache_evictions_total", cache.evictions - prev["evictions"], name, "capacity")
        self._inc("voxwatch_cache_evictions_total", cache.expirations - prev["expirations"], name, "ttl")
        self._inc("voxwatch_cache_writes_total", dm, name)
        if dh + dm:
            self.m("voxwatch_cache_hit_ratio", name).set(dh / (dh + dm))
            self._many("voxwatch_cache_lookup_seconds", self.rng.lognormal(math.log(2e-5), 0.3, 8), name)
            self._many("voxwatch_cache_entry_age_seconds", self.rng.uniform(0, cache.ttl_s, min(dh, 16)), name)
            saved = {"responses": 0.25, "customer_history": 0.04, "product_info": 0.04}.get(name, 0.01)
            self._inc("voxwatch_cache_compute_saved_seconds_total", dh * saved, name)
        n = len(cache)
        self.m("voxwatch_cache_entries", name).set(n)
        self.m("voxwatch_cache_capacity_entries", name).set(cache.capacity)
        self.m("voxwatch_cache_fill_ratio", name).set(n / cache.capacity if cache.capacity else 0.0)
        self.m("voxwatch_cache_bytes", name).set(n * {"responses": 600, "customer_history": 2400, "product_info": 1800}.get(name, 1000))
        prev.update(hits=hits, misses=misses, evictions=cache.evictions, expirations=cache.expirations)

    def queue_state(self, queue, now: float) -> None:
        depth = len(queue)
        self.m("voxwatch_action_queue_depth").set(depth)
        self.m("voxwatch_action_queue_capacity").set(queue.capacity)
        self.m("voxwatch_action_queue_saturation_ratio").set(depth / queue.capacity)
        self.m("voxwatch_action_queue_oldest_age_seconds").set(queue.oldest_age(now))
        self.m("voxwatch_action_queue_dead_letters").set(len(queue.dead_letters))

    def handoff_state(self, queue, now: float) -> None:
        # one human queue and one agent floor serve every region
        waiting = len(queue)
        region = "all"
        self.m("voxwatch_handoff_queue_depth", region).set(waiting)
        self.m("voxwatch_handoff_agents_staffed", region).set(queue.agents)
        self.m("voxwatch_handoff_agents_available", region).set(max(0, queue.agents - queue.agents_busy))
        self.m("voxwatch_handoff_agent_utilization_ratio", region).set(queue.agents_busy / queue.agents if queue.agents else 1.0)
        if queue.agents == 0 and waiting:
            self._inc("voxwatch_handoff_failures_total", waiting, "no_agents")

    def region_state(self, router) -> None:
        total = sum(r.weight for r in router.regions.values()) or 1.0
        for r in router.regions.values():
            self.m("voxwatch_region_up", r.name).set(1.0 if r.up else 0.0)
            self.m("voxwatch_region_draining", r.name).set(1.0 if r.evacuated else 0.0)
            share = 0.0 if (r.failed_over or r.evacuated) else r.weight / total
            self.m("voxwatch_region_traffic_weight_ratio", r.name).set(share)
            self.m("voxwatch_region_health_check_seconds", r.name).observe(float(self.rng.lognormal(math.log(0.03), 0.3)) if r.up else 2.0)
            if not r.up:
                self.m("voxwatch_region_health_check_failures_total", r.name).inc()

    def degradation_level(self, level, now: float, changed: bool, previous=None) -> None:
        self._flush_level_time(now)
        self.m("voxwatch_degradation_level").set(int(level))
        if changed and previous is not None:
            self.m("voxwatch_degradation_transitions_total", DegradationLevel(previous).name, DegradationLevel(level).name).inc()
            self.m("voxwatch_degradation_apply_seconds").observe(0.05)
            if previous == DegradationLevel.NORMAL and level != DegradationLevel.NORMAL:
                self._left_normal_at = now
            elif level == DegradationLevel.NORMAL and self._left_normal_at is not None:
                self.m("voxwatch_degradation_recovery_seconds").observe(now - self._left_normal_at)
                self._left_normal_at = None
        self._level = DegradationLevel(level)

    def _flush_level_time(self, now: float) -> None:
        if self._level_since is not None and now > self._level_since:
            self.m("voxwatch_degradation_level_seconds_total", self._level.name).inc(now - self._level_since)
        self._level_since = now

    def tick(self, now: float, pipeline) -> None:
        self._flush_level_time(now)
        self.m("voxwatch_degradation_level").set(int(pipeline.controller.level))
        ctx = len(pipeline.active)
        if ctx:
            for region in {c.origin_region for c in pipeline.active.values()}:
                self.m("voxwatch_context_sessions", region).set(ctx)
                self.m("voxwatch_context_bytes", region).set(ctx * 6000)

    def _business(self, regions, now: float) -> None:
        window = [(t, r, o, n) for t, r, o, n in self._ended_window if t >= now - 900]
        self._ended_window = window
        for region in regions:
            ended = sum(n for _, r, _, n in window if r == region)
            if not ended:
                continue
            by = {o: sum(n for _, r, oo, n in window if r == region and oo == o) for o in ("completed", "handoff", "abandoned")}
            self.m("voxwatch_business_containment_ratio", region).set(by["completed"] / ended)
            self.m("voxwatch_business_handoff_ratio", region).set(by["handoff"] / ended)
            self.m("voxwatch_business_abandonment_ratio", region).set(by["abandoned"] / ended)

        if self._turns_seen:
            # 30-day budgets, read off this run: 95% of turns within 300 ms; 99.5% of turns answered
            slow = 1.0 - self._turns_good / self._turns_seen
            failed = self._turns_bad / self._turns_seen
            self.m("voxwatch_business_error_budget_remaining_ratio", "turn_latency").set(max(0.0, 1.0 - slow / 0.05))
            self.m("voxwatch_business_error_budget_remaining_ratio", "availability").set(max(0.0, 1.0 - failed / 0.005))
