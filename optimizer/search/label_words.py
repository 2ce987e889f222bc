"""Automatic label words (the ``auto`` verbalizer), from the training data alone, in the manner of LM-BFF's
automatic label-word search (Gao et al., 2021): per label, candidate words ranked by the models' likelihood
over that label's training examples.

1. **Candidates** (:func:`candidate_words`): per label, the words of its training inputs most particular to it
   (a smoothed log-ratio of the word's rate in the label's inputs to its rate in the others'), plus the label's
   own text when it is a word. Ranking the whole vocabulary, as LM-BFF does with a 355M masked model, gives a
   135-270M causal model's frequent tokens; the data narrows the pool to words that say something about a label.
2. **Ranking** (:func:`rank_words`): for a few training examples per label, one label-scoring call on each
   scoring model (the step's zero-shot compact prompt, all candidates as continuations, one pass over their
   trie); a candidate's score for a label is its mean log-probability on that label's examples minus its mean
   over all examples (how much more likely the label's inputs make it). Each label gets its best candidate
   (its own candidates only, distinct by construction: the data grounds every word).

Every call goes through the compile's LM and is counted against its budget, like instruction proposals. Steps
with one label output only, and with at most :data:`MAX_LABELS` labels (so every label keeps
:data:`MIN_CANDIDATES` candidates within the scorer's limit).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy

from optimizer.accounting import raise_stopping
from optimizer.adapters.scoring import MAX_LABEL_COMBINATIONS, ScoringUnsupported, label_set, score_compact
from optimizer.models.base import capabilities_of
from optimizer.verbalizers import Verbalizer, check, from_signature, label_fields

MAX_LABELS = 16
MIN_CANDIDATES = 4
EXAMPLES_PER_LABEL = 4
MIN_COUNT = 2  # a word seen once in a label's inputs says little about the label
_TOKEN = re.compile(r"[a-z][a-z']{2,}")
# Function words only: question words ("who", "where", "how") stay, they are what tells TREC's
# answer types apart.
STOPWORDS = frozenset({"about", "after", "all", "also", "and", "any", "are", "been", "before", "being", "but", "can",
    "could", "did", "does", "doing", "for", "from", "had", "has", "have", "having", "her", "hers", "him", "his",
    "its", "into", "itself", "just", "more", "most", "not", "now", "off", "once", "only", "other", "our", "ours",
    "out", "over", "own", "same", "she", "should", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "too", "under", "until", "very",
    "was", "were", "will", "with", "would", "you", "your", "yours"})


def _words(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]


def candidate_words(examples: Sequence[dspy.Example], inputs: Sequence[str], field: str, labels: Sequence[str],
                    per_label: int) -> dict[str, list[str]]:
    """Per label (text), up to ``per_label`` words particular to its examples' ``inputs``, distinct across labels."""
    counts = {label: Counter() for label in labels}
    for ex in examples:
        label = _label_text(ex.get(field), labels)
        if label is not None:
            counts[label].update(set(_words(" ".join(str(ex.get(k, "")) for k in inputs))))
    total = sum(counts.values(), Counter())
    sizes = {label: sum(c.values()) for label, c in counts.items()}
    all_size = sum(sizes.values())
    ranked: dict[str, list[tuple[float, str]]] = {}
    for label, c in counts.items():
        rest = all_size - sizes[label]
        ranked[label] = sorted((_log_odds_z(n, sizes[label], total[w] - n, rest, total[w], all_size), w)
                               for w, n in c.items() if n >= MIN_COUNT)[::-1]
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for label in labels:
        own = label.lower()
        words = [own] if _TOKEN.fullmatch(own) and own not in used else []
        words += [w for _, w in ranked[label] if w not in used and w not in words][:per_label - len(words)]
        used.update(words)
        out[label] = words
    return out


def _log_odds_z(n: int, size: int, n_rest: int, rest: int, prior: int, prior_size: int) -> float:
    """The z-score of a word's log-odds in a label's inputs against the others', with the pooled counts as an
    informative Dirichlet prior (Monroe, Colaresi and Quinn, 2008): frequent, particular words rank first."""
    a, a0 = float(prior), float(prior_size)
    delta = (math.log((n + a) / max(size + a0 - n - a, 0.5))
             - math.log((n_rest + a) / max(rest + a0 - n_rest - a, 0.5)))
    return delta / math.sqrt(1 / (n + a) + 1 / (n_rest + a))


def _label_text(value: Any, labels: Sequence[str]) -> str | None:
    text = str(getattr(value, "value", value)) if value is not None else None
    return text if text in labels else None


def rank_words(candidates: dict[str, list[str]], scores: dict[str, list[dict[str, float]]]) -> dict[str, str]:
    """Each label's word among its own candidates, from ``scores`` (label -> one {word: log-prob} per scored
    example of that label): the largest gain of its mean log-prob on the label's examples over all examples."""
    every = [s for rows in scores.values() for s in rows]
    return {label: max(words, key=lambda w, rows=scores[label]: sum(s[w] for s in rows) / len(rows)
                       - sum(s[w] for s in every) / len(every))
            for label, words in candidates.items()}


def auto_words(signature: type[dspy.Signature], trainset: Sequence[dspy.Example], lms: Sequence[dspy.LM], *,
               seed: int) -> Verbalizer | None:
    """Label words for ``signature``'s one label output found from ``trainset`` with the scoring ``lms``;
    None when the step does not qualify (see the module docstring), no model can score, or a label has no
    training example or no candidate word."""
    fields = label_fields(signature)
    scorers = [lm for lm in lms if capabilities_of(lm).label_scoring]
    if len(fields) != 1 or label_set(signature) is None or not scorers:
        return None
    (field, labels), = fields.items()
    texts = list(labels)
    if len(texts) > MAX_LABELS:
        return None
    inputs = list(signature.input_fields)
    candidates = candidate_words(trainset, inputs, field, texts, max(MIN_CANDIDATES,
                                                                      MAX_LABEL_COMBINATIONS // len(texts)))
    pool = [w for ws in candidates.values() for w in ws]
    rng = random.Random(seed)
    sample = {label: [ex for ex in trainset if _label_text(ex.get(field), texts) == label] for label in texts}
    if any(not rows for rows in sample.values()) or any(not words for words in candidates.values()):
        return None  # a label with no training example or no candidate word gets no automatic words
    sample = {label: rng.sample(rows, min(EXAMPLES_PER_LABEL, len(rows))) for label, rows in sample.items()}
    scoring = signature.with_updated_fields(field, type_=Literal[tuple(pool)])
    scores: dict[str, list[dict[str, float]]] = {label: [] for label in texts}
    for label, rows in sample.items():
        for ex in rows:
            total = dict.fromkeys(pool, 0.0)
            for lm in scorers:
                try:
                    keys, logprobs = _score(lm, scoring, {k: ex.get(k) for k in inputs})
                except (ScoringUnsupported, ValueError) as exc:
                    raise_stopping(exc)
                    return None
                for key, lp in zip(keys, logprobs, strict=True):
                    total[key] += lp
            scores[label].append(total)
    words = rank_words(candidates, scores)
    verbalizer = {field: {label: words[label] for label in texts}}
    check(signature, verbalizer)
    return verbalizer


def _score(lm: dspy.LM, signature: type[dspy.Signature], inputs: dict[str, Any]) -> tuple[list[str], list[float]]:
    labels, logprobs = score_compact(lm, signature, [], inputs)
    return labels.keys, logprobs


def words_for(signature: type[dspy.Signature], sources: Sequence[str], trainset: Sequence[dspy.Example],
              lm_for: Callable[[str], dspy.LM], models: Sequence[str], seed: int) -> dict[str, Verbalizer]:
    """The step's label-word candidates by source (``signature``, ``auto``), each only where it exists."""
    out: dict[str, Verbalizer] = {}
    if "signature" in sources and (given := from_signature(signature)):
        out["signature"] = given
    wanted = "auto" in sources and label_set(signature) is not None  # no model handle built for other steps
    found = auto_words(signature, trainset, [lm_for(m) for m in models], seed=seed) if wanted else None
    if found and found not in out.values():
        out["auto"] = found
    return out

