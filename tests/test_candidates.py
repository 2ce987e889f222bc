"""The proposal filter, on proposals the tiny local models really produced."""

import pytest

from optimizer.search.candidates import is_usable

ORIGINAL = "Classify the sentiment of a movie review sentence."
TRAIN = ["a gorgeous, witty, seductive movie that never loses its footing"]
LABELS = ["negative", "positive"]


@pytest.mark.parametrize("text", [
    "Read the movie review sentence and decide how the writer feels about the film.",
    "Decide whether the review sentence is positive or negative about the movie.",
])
def test_usable_proposals_pass(text):
    assert is_usable(text, original=ORIGINAL, train_texts=TRAIN, labels=LABELS)


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("Good good good good good good good.", "degenerate"),
    (ORIGINAL, "the original again"),
    # A real Gemma 3 270M proposal for TREC: it echoes the proposal prompt.
    ("Provide one short, clear instruction that can be easily understood by a human. The instruction should "
     "instruct you to provide a question about what a certain topic is called.", "template-copying"),
    ("Label the sentence positive when the movie is mentioned.", "names one label only"),
    ("Classify: a gorgeous, witty, seductive movie that never loses its footing.", "copies a training input"),
])
def test_bad_proposals_are_dropped(text, why):
    assert not is_usable(text, original=ORIGINAL, train_texts=TRAIN, labels=LABELS), why


def test_labels_match_as_whole_labels():
    labels = ["HUM", "HUM:ind", "LOC"]
    # A real SmolLM2 proposal for TREC's coarse step names one of six classes: it is dropped.
    assert not is_usable("This task is about classifying an entity such as a country or a city, with the prefix "
                         "HUM.", original="", train_texts=[], labels=labels)
    assert is_usable("Tell which kind of answer the question asks for: HUM, HUM:ind or LOC.", original="",
                     train_texts=[], labels=labels)
    assert is_usable("Name the kind of answer the question wants, from the humans to the numbers.", original="",
                     train_texts=[], labels=labels)
