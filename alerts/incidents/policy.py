"""How alerts, findings, pages and actions are grouped into incidents: a few rules an operator can
read (`GroupingPolicy.describe()` prints them; the README and every report repeat them).

1. An incident opens when an alert fires and no open incident takes it.
2. An open incident takes a firing alert that shares a resource with it (a value of a scope label:
   pool, service, region, ...), or that names no resource (an SLO burn), or that fires while the
   incident names none yet.
3. Whatever its labels, an alert that fires within `cascade_s` of an open incident's last change (an
   alert firing or resolving, an action applied or reverted) joins it: the same trouble spreading.
4. Findings of the anomaly detectors join the open incident whose resources they name, back to
   `finding_lookback_s` before it opened; the timeline keeps the first finding of each series.
5. Pages join the incidents of the alerts they carry; actions join the incident of the rule that
   asked for them (and of its region, for regional actions).
6. An incident resolves by itself once every alert of it has resolved and every action it took has
   been reverted, and nothing changed for `quiet_s`; a person may acknowledge or resolve it sooner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupingPolicy:
    scope_labels: tuple[str, ...] = ("pool", "service", "system", "integration", "provider", "region", "stage")
    cascade_s: float = 600.0
    finding_lookback_s: float = 3600.0
    quiet_s: float = 900.0

    def scope_of(self, labels: dict[str, str]) -> set[str]:
        """The resources a label set names (values, so pool=orders and service=orders meet)."""
        return {str(labels[k]) for k in self.scope_labels if labels.get(k)}

    def describe(self) -> list[str]:
        return [
            "An incident opens when an alert fires and no open incident takes it.",
            f"An open incident takes a firing alert that shares a resource with it ({', '.join(self.scope_labels)} "
            "label values), names no resource, or fires while the incident names none yet.",
            f"Any alert firing within {self.cascade_s / 60:g} min of an open incident's last change joins it.",
            f"Findings join the open incident whose resources they name, back to {self.finding_lookback_s / 60:g} min "
            "before it opened; the first finding of each series is kept.",
            "Pages join the incidents of the alerts they carry; actions join the incident of the rule that asked for them.",
            f"An incident resolves by itself when its alerts have resolved, its actions are reverted and nothing "
            f"changed for {self.quiet_s / 60:g} min.",
        ]
