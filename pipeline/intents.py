"""The retail intent catalogue as the pipeline sees it: for each intent, what the answer needs
(lookups), what must happen afterwards (actions), whether a common answer can be cached, and
whether it ends in a human. Both the real stages and the simulator read this table, so a rule
lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.engines import FALLBACK_INTENT, HUMAN_INTENT


@dataclass(frozen=True)
class Lookup:
    system: str  # connector / pool: crm | orders | ticketing | catalog
    operation: str
    cache: str | None = None  # cache consulted first (customer_history | product_info)
    required: bool = True  # the answer cannot be given without it (else it is skipped when degraded)


@dataclass(frozen=True)
class IntentSpec:
    name: str
    lookups: tuple[Lookup, ...] = ()
    actions: tuple[tuple[str, str], ...] = ()  # (system, operation) done after answering
    cacheable: bool = False  # the answer does not depend on the caller: response cache per intent
    handoff: bool = False


CUSTOMER_HISTORY = Lookup("crm", "customer_history", cache="customer_history", required=False)

INTENTS: dict[str, IntentSpec] = {
    s.name: s
    for s in (
        IntentSpec("greeting", cacheable=True),
        IntentSpec("goodbye", cacheable=True, actions=(("crm", "log_interaction"),)),
        IntentSpec("order_status", lookups=(CUSTOMER_HISTORY, Lookup("orders", "order_status"))),
        IntentSpec("return_request", lookups=(CUSTOMER_HISTORY, Lookup("orders", "order_status")), actions=(("orders", "create_return"),)),
        IntentSpec("return_policy", cacheable=True),
        IntentSpec("shipping_info", cacheable=True),
        IntentSpec("store_hours", cacheable=True),
        IntentSpec("billing", lookups=(CUSTOMER_HISTORY, Lookup("crm", "billing_account")), actions=(("ticketing", "open_ticket"),)),
        IntentSpec("product_question", lookups=(Lookup("catalog", "product_info", cache="product_info"),)),
        IntentSpec("account_update", lookups=(CUSTOMER_HISTORY,), actions=(("crm", "update_account"),)),
        IntentSpec("complaint", lookups=(CUSTOMER_HISTORY,), actions=(("ticketing", "open_ticket"),)),
        IntentSpec("cancel_order", lookups=(CUSTOMER_HISTORY, Lookup("orders", "order_status")), actions=(("orders", "cancel_order"),)),
        IntentSpec(HUMAN_INTENT, handoff=True),
        IntentSpec(FALLBACK_INTENT),
    )
}

INTENT_NAMES: tuple[str, ...] = tuple(INTENTS)
SYSTEMS: tuple[str, ...] = ("crm", "orders", "ticketing", "catalog")


def spec(intent: str) -> IntentSpec:
    """The intent's spec; unknown intents (a classifier with more labels) get a plain LLM answer."""
    return INTENTS.get(intent) or IntentSpec(intent)


@dataclass
class IntentArrays:
    """The same table as arrays indexed by intent number, for stages that run many turns at once:
    `needs_history[i]`, the one lookup the answer needs (`lookup_system` index into `systems`, -1 for
    none; `lookup_cached` when the product cache is consulted first), the first action
    (`action_system`, `action_op`) and `cacheable`."""

    names: list[str]
    systems: tuple[str, ...]
    needs_history: object
    lookup_system: object
    lookup_cached: object
    lookup_op: list[str]
    action_system: object
    action_op: list[str]
    cacheable: object
    human: int
    fallback: int
    goodbye: int


def intent_arrays(names: list[str]) -> IntentArrays:
    import numpy as np

    n = len(names)
    t = IntentArrays(list(names), SYSTEMS, np.zeros(n, bool), np.full(n, -1, np.int16), np.zeros(n, bool), [""] * n,
                     np.full(n, -1, np.int16), [""] * n, np.zeros(n, bool), -1, -1, -1)
    for i, name in enumerate(names):
        s = spec(name)
        t.cacheable[i] = s.cacheable
        for lk in s.lookups:
            if lk.cache == "customer_history":
                t.needs_history[i] = True
            else:
                t.lookup_system[i] = SYSTEMS.index(lk.system)
                t.lookup_cached[i] = lk.cache == "product_info"
                t.lookup_op[i] = lk.operation
        if s.actions:
            system, op = s.actions[0]
            t.action_system[i] = SYSTEMS.index(system)
            t.action_op[i] = op
    index = {name: i for i, name in enumerate(names)}
    t.human, t.fallback, t.goodbye = index.get(HUMAN_INTENT, -1), index.get(FALLBACK_INTENT, -1), index.get("goodbye", -1)
    return t
