"""The Numenta Anomaly Benchmark: the corpus, the scorer (vectorised) and a streaming runner.

`score_corpus` implements NAB's scoring as `shared/data/nab/README.md` specifies it; a test checks it
against the reference detector outputs shipped with the data. `run_nab` streams a detector over
every file (each point once, in order, one parameter set) and scores it.
"""

from anomaly.nab.corpus import NabFile, load_corpus, load_reference_scores
from anomaly.nab.scoring import PROFILES, Profile, ScoreReport, score_corpus

__all__ = [
    "NabFile",
    "load_corpus",
    "load_reference_scores",
    "PROFILES",
    "Profile",
    "ScoreReport",
    "score_corpus",
]
