"""Ingest of other pipelines' OpenTelemetry (OTLP/HTTP) into Voxwatch's own rows.

`otlp` decodes a request body with the official opentelemetry-proto messages and encodes the answers
the OTLP specification prescribes; `spans` maps traces onto `spans`/`calls` rows and the catalog's
stage metrics; `metrics` maps OTLP metrics onto `metric_series`/`metric_samples`; `logs` maps OTLP logs onto `logs`;
`conventions` is the
written-down mapping of Pipecat's and LiveKit Agents' span names and attributes (docs/ingest.md).
Nothing here knows HTTP beyond status codes: the router lives in voxwatch/api/ingest.py.
"""

from telemetry.ingest.logs import LogIngest
from telemetry.ingest.metrics import EXTERNAL_ID_BASE, MetricIngest
from telemetry.ingest.otlp import JSON, PROTOBUF, SIGNALS, OtlpError
from telemetry.ingest.spans import IngestLimits, IngestResult, Source, TraceIngest

__all__ = ["EXTERNAL_ID_BASE", "JSON", "PROTOBUF", "SIGNALS", "IngestLimits", "IngestResult", "LogIngest", "MetricIngest",
           "OtlpError", "Source", "TraceIngest"]
