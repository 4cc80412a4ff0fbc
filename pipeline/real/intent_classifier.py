"""The intent classifier: TF-IDF (words and character n-grams, which forgive recogniser slips) and a
logistic regression, trained from the shipped dataset (`pipeline/data/intents.yaml`) on first use.

The fitted model is cached on disk, keyed by a hash of the dataset and the scikit-learn version, so a
process pays the training cost (about a second) once per dataset change. Below `threshold` the
classifier answers the fallback intent: the runner counts those as misunderstandings.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.engines import FALLBACK_INTENT, IntentResult

OUT_OF_SCOPE = "out_of_scope"  # a dataset label meaning "none of the intents": answered as the fallback

DATASET = Path(__file__).resolve().parent.parent / "data" / "intents.yaml"
# Part of the cache key: change it whenever build_model() changes, or a stale model would be loaded.
MODEL_SPEC = "tfidf-word12-char25-logreg-C5-v1"


def cache_dir() -> Path:
    return Path(os.environ.get("VOXWATCH_CACHE_DIR") or Path.home() / ".cache" / "voxwatch")


@dataclass(frozen=True)
class IntentDataset:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    digest: str

    @property
    def intents(self) -> list[str]:
        return sorted(set(self.labels))


def load_dataset(path: Path = DATASET) -> IntentDataset:
    raw = path.read_bytes()
    try:
        doc = yaml.safe_load(raw)
        intents = doc["intents"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an intent dataset (expected a mapping 'intents: {{name: [utterances]}}'): {exc}") from exc
    texts: list[str] = []
    labels: list[str] = []
    for name, utterances in intents.items():
        if not isinstance(utterances, list) or not utterances:
            raise ValueError(f"{path}: intent {name!r} needs a non-empty list of utterances")
        for u in utterances:
            texts.append(str(u).strip().lower())
            labels.append(str(name))
    return IntentDataset(tuple(texts), tuple(labels), hashlib.sha256(raw).hexdigest()[:16])


def build_model():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w[\w']*\b"),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=1),
    )
    return make_pipeline(features, LogisticRegression(C=5.0, max_iter=2000))


def _fit(dataset: IntentDataset):
    model = build_model()
    model.fit(list(dataset.texts), list(dataset.labels))
    return model


def load_or_train(dataset: IntentDataset, directory: Path | None = None):
    """The fitted model for this dataset: from the on-disk cache, or trained now and cached."""
    import sklearn

    directory = directory or cache_dir()
    path = directory / f"intent-model-{MODEL_SPEC}-{dataset.digest}-sklearn{sklearn.__version__}.pkl"
    if path.exists():
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except Exception:  # a torn or stale file: train again
            pass
    model = _fit(dataset)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(model, f)
        os.replace(tmp, path)  # atomic: concurrent first runs never read half a file
    except OSError:
        pass  # a read-only home still gets a working (uncached) classifier
    return model


def cross_validated_accuracy(dataset: IntentDataset | None = None, folds: int = 5, seed: int = 0) -> float:
    """Held-out accuracy of the classifier on the shipped dataset (stratified k-fold)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    dataset = dataset or load_dataset()
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(build_model(), list(dataset.texts), list(dataset.labels), cv=cv).mean())


@functools.lru_cache(maxsize=4)
def _shared_model(path: str, digest: str):
    return load_or_train(load_dataset(Path(path)))


class SklearnIntentClassifier:
    """`IntentClassifier` engine. Classification takes well under a millisecond, so it runs inline."""

    name = "tfidf-logreg"

    def __init__(self, threshold: float = 0.40, dataset_path: Path = DATASET) -> None:
        self.threshold = threshold
        self.dataset = load_dataset(dataset_path)
        self.model = _shared_model(str(dataset_path), self.dataset.digest)

    def predict(self, text: str) -> IntentResult:
        from pipeline.media.stt import normalize_words

        cleaned = normalize_words(text)
        if not cleaned:
            return IntentResult(FALLBACK_INTENT, 0.0, fallback=True)
        probs = self.model.predict_proba([cleaned])[0]
        classes = self.model.classes_
        scores = {str(c): float(p) for c, p in zip(classes, probs)}
        best = max(scores, key=scores.get)
        conf = scores[best]
        if conf < self.threshold or best == OUT_OF_SCOPE:
            return IntentResult(FALLBACK_INTENT, conf, fallback=True, scores=scores)
        return IntentResult(best, conf, fallback=False, scores=scores)

    async def classify(self, text: str, *, language: str = "en") -> IntentResult:
        return self.predict(text)


async def _demo() -> None:  # pragma: no cover - manual check
    c = SklearnIntentClassifier()
    for t in ("where is my order", "i want a human", "blah blah weather"):
        print(t, await c.classify(t))


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_demo())
