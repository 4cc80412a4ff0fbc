"""The alerts room's SQL runs on both engines: state, notification log, silences and actions
written by one engine instance are taken back by the next, on chdb and on the 18.16 server."""

from __future__ import annotations

import asyncio

import pytest

from alerts.actions import CallableActionSink
from alerts.engine import AlertEngine
from alerts.model import StoreWriter
from alerts.notify.silences import Silences
from alerts.ruleset import load_rules
from pipeline.degradation import DegradationController
from tests.alerts.conftest import SECRET, run_for

RULES = """
groups:
  - name: g
    rules:
      - alert: PoolHigh
        type: threshold
        expr: {{metric: voxwatch_pool_saturation_ratio}}
        aggregation: last
        window: 2s
        by: [pool]
        threshold: 0.9
        severity: page
        labels: {{hierarchy: pool}}
        action: {{level: INTEGRATIONS_QUEUED, min_hold: 10s, revert_after: 10s}}
route:
  receiver: pager
  group_wait: 1s
  group_interval: 5s
  routes:
    - {{receiver: actions, match_re: {{hierarchy: ".+"}}, group_by: ["..."], group_wait: 0s, group_interval: 1s, continue: true}}
    - {{receiver: pager}}
receivers:
  - {{name: pager, type: webhook, url: "{url}", secret: "{secret}"}}
  - {{name: actions, type: action}}
"""


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.server)])
def backend(request):
    return request.getfixturevalue({"chdb": "store", "server": "server_store"}[request.param])


def test_state_nflog_silences_and_actions_survive_a_restart(tmp_path, clock, receiver, backend):
    p = tmp_path / "r.yaml"
    p.write_text(RULES.format(url=receiver.url, secret=SECRET))
    rs = load_rules([p])
    ctl = DegradationController(clock)
    sink = CallableActionSink(ctl.request, ctl.state)
    writer = StoreWriter(backend)
    feed = lambda eng, v: (lambda now: eng.ingest([("voxwatch_pool_saturation_ratio", {"pool": "crm"}, v)]))  # noqa: E731

    eng = AlertEngine(rs, clock, writer=writer, store=backend, action_sink=sink)
    sid = eng.silences.create([{"name": "pool", "value": "orders"}], duration=3600, created_by="t")
    asyncio.run(run_for(eng, clock, 5, feed(eng, 0.95)))
    assert len(receiver.accepted) == 1 and ctl.state()["level"] == "INTEGRATIONS_QUEUED"

    eng2 = AlertEngine(rs, clock, writer=writer, store=backend, action_sink=sink)
    assert [a.rule for a in eng2.firing()] == ["PoolHigh"]
    assert any(eng2.nflog.query("pager", key) is not None for key in eng.dispatcher.groups)
    assert eng2.actions.active
    assert [s["id"] for s in Silences(clock, store=backend).list("active")] == [sid]

    async def later():
        await run_for(eng2, clock, 5, feed(eng2, 0.95))
        assert len(receiver.accepted) == 1  # nothing repeated
        await run_for(eng2, clock, 30, feed(eng2, 0.2))

    asyncio.run(later())
    assert [b["status"] for b in receiver.bodies()] == ["firing", "resolved"]
    assert ctl.state()["level"] == "NORMAL"
