"""The shipped knowledge base (`pipeline/data/knowledge_base.yaml`): the retailer's hours, policies,
products and answer templates, read by the local LLM stand-in and the CRM/catalog stand-in."""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path
from typing import Any

import yaml

KNOWLEDGE_BASE = Path(__file__).resolve().parent.parent / "data" / "knowledge_base.yaml"


@functools.lru_cache(maxsize=2)
def load_knowledge(path: str = str(KNOWLEDGE_BASE)) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        kb = yaml.safe_load(f)
    for key in ("store", "policies", "products", "answers"):
        if key not in kb:
            raise ValueError(f"{path}: knowledge base lacks the {key!r} section")
    return kb


def find_product(text: str, kb: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The catalogue product whose name shares the most words with what the caller said."""
    kb = kb or load_knowledge()
    words = set(re.findall(r"[a-z]+", text.lower()))
    best, best_score = None, 0
    for p in kb["products"]:
        score = len(words & set(p["name"].split()))
        if score > best_score:
            best, best_score = p, score
    return best


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render_answer(intent: str, facts: dict[str, Any], kb: dict[str, Any] | None = None) -> str:
    """The templated answer for an intent, filled from the facts; unknown placeholders fall back."""
    kb = kb or load_knowledge()
    answers = kb["answers"]
    values: dict[str, Any] = {
        "store": kb["store"]["name"],
        "hours": kb["store"]["hours"],
        "returns": kb["policies"]["returns"],
        "shipping": kb["policies"]["shipping"],
        "cancellation": kb["policies"]["cancellation"],
    }
    for fact in facts.values():
        if isinstance(fact, dict):
            values.update({k: v for k, v in fact.items() if isinstance(v, (str, int, float))})
    template = answers.get(intent) or answers["default"]
    if intent == "order_status" and "order_id" not in values:
        template = answers["order_status_unknown"]
    if intent == "product_question" and "product" not in values:
        template = answers["product_unknown"]
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if names - set(values):  # a fact is missing: say what we can without inventing it
        template = answers["default"] if intent not in ("greeting", "goodbye") else template
    return template.format_map(_Lenient(values))
