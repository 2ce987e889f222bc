"""Constraint compilation: the alphabet-filtered index allows exactly the tokens the whole-vocabulary
index allows, in every state; indexes are compiled once per model file and shared by its instances."""

from __future__ import annotations

import json

import pytest
from outlines_core import Index

from optimizer.adapters.chat import reply_regex
from optimizer.adapters.compact import output_regex, outputs_model
from optimizer.models import GEMMA3, SMOLLM2, local
from optimizer.models.constrain import Constraint
from programs.entities import ExtractEntities
from programs.sentiment import ClassifySentiment
from programs.trec import FineClass

pytestmark = pytest.mark.slow  # runs the local models


def constraints() -> dict[str, Constraint]:
    def schema(signature) -> Constraint:
        return Constraint("json_schema", json.dumps(outputs_model(signature).model_json_schema(), sort_keys=True))

    return {"sst2-json": schema(ClassifySentiment), "fine-json": schema(FineClass),
            "fine-compact": Constraint("regex", output_regex(FineClass)),
            "sst2-chat": Constraint("regex", reply_regex(ClassifySentiment)),
            "entities-json": schema(ExtractEntities)}


@pytest.mark.parametrize("spec", [SMOLLM2, GEMMA3], ids=["smollm2", "gemma3"])
def test_filtered_index_allows_the_same_tokens_as_the_full_one(spec):
    compiler = local.load(spec).compiler
    for name, constraint in constraints().items():
        filtered, _, _ = compiler.index(constraint)
        full = Index(constraint.regex(), compiler._vocabulary)
        assert filtered.get_transitions() == full.get_transitions(), name
        assert filtered.get_final_states() == full.get_final_states(), name


def test_alphabet_of_a_label_regex():
    compiler = local.load(SMOLLM2).compiler
    assert compiler.alphabet(" (negative|positive)\\n?") == set(" negativpos\n")


def test_instances_of_one_file_share_compiled_indexes():
    first, second = local.load(SMOLLM2, slot="share-a"), local.load(SMOLLM2, slot="share-b")
    assert first.compiler is second.compiler
    constraint = Constraint("regex", " (zebra|quokka)-[0-9]\\n?")
    index_a, _, compiled_a = first.compiler.index(constraint)
    index_b, _, compiled_b = second.compiler.index(constraint)
    assert compiled_a and not compiled_b and index_a is index_b
