"""Incidents: related findings, alerts, pages and actions grouped into one object with a state
(open, acknowledged, resolved), the people paged, a timeline and timings, stored like the rest.

    IncidentTracker     grouping (by GroupingPolicy), state, timeline; fed by the AlertEngine
    GroupingPolicy      the rules, readable (`describe()`)
    Incident, TimelineEvent
    (their SQL, with the rest of alerts' tables, is in alerts.tables)
    report              the post-incident report (Markdown)
"""

from alerts.incidents.model import ACKNOWLEDGED, OPEN, RESOLVED, STATES, Incident, TimelineEvent
from alerts.incidents.policy import GroupingPolicy
from alerts.incidents.tracker import IncidentError, IncidentTracker

__all__ = ["ACKNOWLEDGED", "OPEN", "RESOLVED", "STATES", "GroupingPolicy", "Incident", "IncidentError",
           "IncidentTracker", "TimelineEvent"]
