"""Copied spans on the real local models: with the span rules on, every extracted string is a substring of
its sentence and every output parses, in every format; the decoder's restriction is really active (off, the
same variant invents strings); and `progopt run`'s loader decodes a saved artifact the same way."""

import pytest

from optimizer.evaluate import evaluate
from optimizer.space.build import build_program
from optimizer.space.variant import StepConfig
from optimizer.spans import step_spans
from programs.entities import TASK, EntityExtractor, metric

pytestmark = pytest.mark.slow  # runs the local models

SENTENCES = 5


def _run(pool, model, fmt, spans, test):
    program = EntityExtractor()
    signature = program.extract.signature
    rules = step_spans(signature, TASK.load("train", limit=100)) if spans else []
    config = StepConfig(instruction=signature.instructions, model=model, format=fmt, spans=rules)
    return evaluate(build_program(program, {"extract": config}, pool.lm), test, metric, show_progress=False)


def _invented(ev, test):
    return [e["text"] for r, ex in zip(ev.results, test, strict=True)
            for e in (r.prediction or {}).get("entities") or [] if e["text"] not in ex.text]


@pytest.mark.parametrize("fmt", ["json", "chat", "compact"])
def test_span_values_are_copied_and_parse_in_every_format(pool, fmt):
    test = TASK.load("test", limit=SENTENCES)
    ev = _run(pool, "local/gemma3-270m", fmt, True, test)
    assert ev.summary().validity_rate == 1.0, [r.error for r in ev.results]
    assert _invented(ev, test) == []
    if fmt == "json":  # zero-shot Gemma extracts in json; under chat it answers [] to these sentences
        assert any((r.prediction or {}).get("entities") for r in ev.results)


def test_without_the_rules_the_same_variant_invents_strings(pool):
    test = TASK.load("test", limit=SENTENCES)
    assert _invented(_run(pool, "local/gemma3-270m", "json", False, test), test)  # e.g. 'NFL' for 'National ...'


def test_a_saved_artifact_decodes_spans_as_the_compile_did(pool, tmp_path):
    from optimizer.artifact import load_artifact, save_artifact
    from optimizer.models import GEMMA3
    from tests.fixtures.artifacts import SUMMARY

    test = TASK.load("test", limit=2)
    signature = EntityExtractor().extract.signature
    config = StepConfig(instruction=signature.instructions, model=GEMMA3.name, format="json",
                        spans=step_spans(signature, TASK.load("train", limit=100)))
    path = save_artifact(tmp_path / "a.json", program_ref="programs/entities.py:EntityExtractor",
                         program=EntityExtractor(), steps={"extract": config}, models={GEMMA3.name: GEMMA3},
                         metrics={"validation": SUMMARY}, provenance={})
    loaded = load_artifact(path)
    compiled = build_program(EntityExtractor(), {"extract": config}, pool.lm)
    for ex in test:
        dump = lambda pred: [e.model_dump() for e in pred.entities]  # noqa: E731 - two Entity classes
        assert dump(loaded(text=ex.text)) == dump(compiled(text=ex.text))
