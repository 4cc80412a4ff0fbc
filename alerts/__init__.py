"""Alerts: rule files and their evaluation, the alert state machine, notification stages and
receivers (signed webhooks, PagerDuty, Alertmanager), and degradation actions that close the loop.

Public surface (import from here):
    load_rules, RuleSet, RuleFileError            rule files (YAML, validated)
    AlertEngine                                    evaluation, state, persistence, dispatch
    ActionSink, CallableActionSink, HttpActionSink, ActionController
    Silences, SilenceError                         silences (create/expire/list)
    sign, verify, SignatureError                   Standard Webhooks signatures
"""

from alerts.actions import ActionController, ActionSink, CallableActionSink, HttpActionSink
from alerts.engine import AlertEngine, build_engine
from alerts.model import Alert, StoreWriter
from alerts.notify.silences import SilenceError, Silences
from alerts.receivers.signing import SignatureError, sign, verify
from alerts.ruleset import DEFAULT_RULES_DIR, RuleFileError, RuleSet, load_rules, parse_duration

__all__ = [
    "ActionController", "ActionSink", "Alert", "AlertEngine", "CallableActionSink", "DEFAULT_RULES_DIR",
    "HttpActionSink", "RuleFileError", "RuleSet", "SignatureError", "SilenceError", "Silences", "StoreWriter",
    "build_engine", "load_rules", "parse_duration", "sign", "verify",
]
