"""Word error rate: (substitutions + deletions + insertions) / reference words, on normalised words."""

from __future__ import annotations

from pipeline.media.stt import normalize_words


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, number of reference words)."""
    ref = normalize_words(reference).split()
    hyp = normalize_words(hypothesis).split()
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    errors, n = word_errors(reference, hypothesis)
    return errors / n if n else float(bool(normalize_words(hypothesis)))


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """WER over many utterances: total errors over total reference words (not a mean of ratios)."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors += e
        words += n
    return errors / words if words else 0.0
