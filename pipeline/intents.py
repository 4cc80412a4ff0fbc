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
