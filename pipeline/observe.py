"""Where pipeline events become catalog metrics. Stages, pools, caches and queues call the
methods of a metrics object; `NullMetrics` ignores them (tests of pure behaviour), the catalog-backed
`PipelineMetrics` (pipeline/metrics/) records them.
"""

from __future__ import annotations


class NullMetrics:
    """Accepts every metrics event and records nothing."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _ignore


def _ignore(*args, **kwargs) -> None:
    return None
