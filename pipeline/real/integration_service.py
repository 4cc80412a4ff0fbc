"""The local stand-in for the retailer's CRM, order and ticketing systems (FastAPI on 127.0.0.1).

One endpoint per (system, operation): `POST /v1/{system}/{operation}` with the action's payload.
Data is generated deterministically from the customer id and the knowledge base's catalogue.
Actions that change something honour `Idempotency-Key`: a retry returns the first result instead of
acting twice. `POST /admin/faults` injects latency and error rates per system (for tests and demos).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field

from pipeline.real.knowledge import find_product, load_knowledge
from pipeline.real.llm_server import product_facts

ORDER_STATES = ("out for delivery", "shipped", "being packed", "delivered")


@dataclass
class Faults:
    latency_s: dict[str, float] = field(default_factory=dict)
    error_rate: dict[str, float] = field(default_factory=dict)


class FaultsIn(BaseModel):
    system: str
    latency_ms: float = Field(0.0, ge=0)
    error_rate: float = Field(0.0, ge=0, le=1)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest(), "big")


def customer_history(customer_id: str) -> dict[str, Any]:
    r = random.Random(_seed("customer", customer_id))
    return {
        "customer_id": customer_id,
        "tier": r.choice(["standard", "member", "gold"]),
        "orders_last_year": r.randint(1, 12),
        "last_order_id": f"NW{r.randint(100000, 999999)}",
    }


def order_status(customer_id: str) -> dict[str, Any]:
    r = random.Random(_seed("order", customer_id))
    hist = customer_history(customer_id)
    return {
        "order_id": hist["last_order_id"],
        "order_state": r.choice(ORDER_STATES),
        "eta": r.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        "carrier": r.choice(["UPS", "FedEx", "USPS"]),
    }


def billing_account(customer_id: str) -> dict[str, Any]:
    r = random.Random(_seed("billing", customer_id))
    return {"last_charge": f"{r.uniform(20, 250):.2f}", "last_charge_date": r.choice(["March 3", "March 9", "March 14"])}


def create_integration_app() -> FastAPI:
    app = FastAPI(title="Voxwatch CRM/orders/ticketing stand-in")
    faults = Faults()
    done: dict[str, dict] = {}  # idempotency key -> first result
    app.state.faults = faults
    app.state.requests = {}  # (system, operation) -> count
    app.state.actions_applied = {}  # (system, operation) -> count of actions done (not replays)
    kb = load_knowledge()

    lookups = {
        ("crm", "customer_history"): lambda p: customer_history(p.get("customer_id", "")),
        ("crm", "billing_account"): lambda p: billing_account(p.get("customer_id", "")),
        ("orders", "order_status"): lambda p: order_status(p.get("customer_id", "")),
        ("catalog", "product_info"): lambda p: _product(p, kb),
    }
    actions = {
        ("crm", "log_interaction"): lambda p: {"logged": True},
        ("crm", "update_account"): lambda p: {"link_sent": True},
        ("orders", "create_return"): lambda p: {"return_id": f"RT{_seed('return', p.get('customer_id', '')) % 10**6:06d}", "label_emailed": True},
        ("orders", "cancel_order"): lambda p: {"cancel_requested": True},
        ("ticketing", "open_ticket"): lambda p: {"ticket_id": f"TK{_seed('ticket', str(time.time())) % 10**6:06d}"},
    }

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/admin/faults")
    def set_faults(f: FaultsIn) -> dict:
        faults.latency_s[f.system] = f.latency_ms / 1000.0
        faults.error_rate[f.system] = f.error_rate
        return {"system": f.system, "latency_ms": f.latency_ms, "error_rate": f.error_rate}

    @app.post("/v1/{system}/{operation}")
    async def operate(system: str, operation: str, request: Request, idempotency_key: str | None = Header(None)):
        key = (system, operation)
        if key not in lookups and key not in actions:
            raise HTTPException(404, f"unknown operation {system}/{operation}")
        try:
            payload = await request.json()
        except Exception:
            payload = {}
        if not isinstance(payload, dict):
            raise HTTPException(400, "payload must be a JSON object")
        app.state.requests[key] = app.state.requests.get(key, 0) + 1
        delay = faults.latency_s.get(system, 0.0) + 0.004  # a few ms of real service time
        await asyncio.sleep(delay)
        if random.random() < faults.error_rate.get(system, 0.0):
            raise HTTPException(503, f"{system} is unavailable (injected fault)")
        if key in lookups:
            return {"ok": True, "data": lookups[key](payload)}
        if idempotency_key and idempotency_key in done:
            return {"ok": True, "data": done[idempotency_key], "replayed": True}
        result = actions[key](payload)
        app.state.actions_applied[key] = app.state.actions_applied.get(key, 0) + 1
        if idempotency_key:
            done[idempotency_key] = result
        return {"ok": True, "data": result}

    return app


def _product(payload: dict, kb: dict) -> dict[str, Any]:
    product = find_product(str(payload.get("query", "")), kb)
    if product is None:
        return {"found": False}
    return {"found": True, **product_facts(product)}
