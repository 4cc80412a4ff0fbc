"""The pipeline's catalog metrics: every event a stage, pool, cache, queue, region or the degradation
controller reports becomes the catalog's counters, gauges and histograms here, in one place.

Three recording units over the same instruments, one module each: per-event methods for the per-call
pipeline (`events.py`, one turn at a time), `*_batch` methods for the batch simulator, which hands
arrays (`batches.py`; histograms take them in one `observe_many`), and the once-per-second state
gauges (`state.py`); `recorder.py` holds what they share. Quantities that only a media engine measures (RTP, jitter, VAD frames, worker pools,
the autoscaler) are not invented here: the simulator's `SimulatedMetrics`
(pipeline/simulation/models.py) adds its edge, worker and autoscaler models on top of this recorder,
drawn with the recorder's own random stream so telemetry never changes the simulation's course.

A metric name the catalog does not declare is collected in `missing` (tests assert it stays empty)
rather than crashing a running pipeline.
"""

from __future__ import annotations

from pipeline.metrics.batches import BatchRecording
from pipeline.metrics.events import EventRecording
from pipeline.metrics.recorder import (
    ACTION_NAMES,
    LLM_MODEL,
    MODEL_INTERVAL_S,
    NLU_MODEL,
    OUTCOME_REASON,
    PROVIDER,
    SLOW_HISTOGRAMS,
    STT_MODEL,
    CatalogRecorder,
    Recorder,
    peak_rss_bytes,
)
from pipeline.metrics.state import StateRecording


class PipelineMetrics(EventRecording, BatchRecording, StateRecording, Recorder):
    """The pipeline's metrics: per-event, batch and state recording over one set of catalog instruments."""


__all__ = ["ACTION_NAMES", "LLM_MODEL", "MODEL_INTERVAL_S", "NLU_MODEL", "OUTCOME_REASON", "PROVIDER", "SLOW_HISTOGRAMS",
           "STT_MODEL", "BatchRecording", "CatalogRecorder", "EventRecording", "PipelineMetrics", "Recorder", "StateRecording",
           "peak_rss_bytes"]
