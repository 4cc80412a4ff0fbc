"""Annotation templates in Prometheus' spelling: `{{ $labels.region }}`, `{{ $value }}`, and a few
pipes (`printf "%.2f"`, `humanize`, `humanizeDuration`, `humanizePercentage`).

Deliberately small: templates are checked when a rule file loads, so a typo is a load error, not a
blank page at 3 a.m.
"""

from __future__ import annotations

import math
import re

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_VAR = re.compile(r"^\$(value|labels\.([A-Za-z_][A-Za-z0-9_]*)|externalURL|alertname)$")
_PIPE = re.compile(r'^(printf\s+"([^"]*)"|humanize|humanizeDuration|humanizePercentage)$')


class TemplateError(ValueError):
    pass


def _parse(expr: str) -> tuple[str, list[str]]:
    parts = [p.strip() for p in expr.split("|")]
    var, pipes = parts[0], parts[1:]
    if not _VAR.match(var):
        raise TemplateError(f"unknown template value {{{{ {expr} }}}} (use $value, $labels.NAME, $externalURL)")
    for p in pipes:
        m = _PIPE.match(p)
        if not m:
            raise TemplateError(f"unknown template function {p!r} in {{{{ {expr} }}}}")
        if m.group(2) is not None:
            try:
                m.group(2) % 1.0
            except (TypeError, ValueError) as exc:
                raise TemplateError(f"bad printf format {m.group(2)!r}: {exc}") from None
    return var, pipes


def check_template(text: str) -> None:
    if text.count("{{") != text.count("}}"):
        raise TemplateError("unbalanced {{ }}")
    for m in _EXPR.finditer(text):
        _parse(m.group(1))


def _humanize(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.4g}{suffix}"
    return f"{v:.4g}"


def _humanize_duration(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0s"  # as Prometheus writes it (not "0ms")
    if abs(v) < 1:
        return f"{v * 1000:.4g}ms"
    s = int(round(v))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = "".join(f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m")) if n)
    return out + (f"{s}s" if s or not out else "")


def render(text: str, labels: dict[str, str], value: float, external_url: str = "") -> str:
    def one(m: re.Match) -> str:
        var, pipes = _parse(m.group(1))
        if var == "$value":
            out: object = value
        elif var == "$externalURL":
            out = external_url
        elif var == "$alertname":
            out = labels.get("alertname", "")
        else:
            out = labels.get(var.split(".", 1)[1], "")
        for p in pipes:
            try:
                fv = float(out)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if p.startswith("printf"):
                out = _PIPE.match(p).group(2) % fv
            elif p == "humanize":
                out = _humanize(fv)
            elif p == "humanizeDuration":
                out = _humanize_duration(fv)
            elif p == "humanizePercentage":
                out = f"{fv * 100:.4g}%"
        if isinstance(out, float):
            return f"{out:.6g}"
        return str(out)

    return _EXPR.sub(one, text)
