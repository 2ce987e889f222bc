"""Two-step question classifier (TREC): the coarse class first, then the fine class given it."""

from typing import Literal

import dspy

from optimizer.data import Task
from optimizer.metrics import exact_match

Coarse = Literal["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
Fine = Literal[
    "ABBR:abb", "ABBR:exp", "DESC:def", "DESC:desc", "DESC:manner", "DESC:reason", "ENTY:animal",
    "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency", "ENTY:dismed", "ENTY:event", "ENTY:food",
    "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other", "ENTY:plant", "ENTY:product",
    "ENTY:religion", "ENTY:sport", "ENTY:substance", "ENTY:symbol", "ENTY:techmeth", "ENTY:termeq",
    "ENTY:veh", "ENTY:word", "HUM:desc", "HUM:gr", "HUM:ind", "HUM:title", "LOC:city", "LOC:country",
    "LOC:mount", "LOC:other", "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money",
    "NUM:ord", "NUM:other", "NUM:perc", "NUM:period", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
]


class CoarseClass(dspy.Signature):
    """Classify what kind of answer the question asks for: ABBR abbreviation, DESC description,
    ENTY entity, HUM human, LOC location, NUM numeric value."""

    question: str = dspy.InputField()
    coarse: Coarse = dspy.OutputField()


class FineClass(dspy.Signature):
    """Give the fine answer type of the question, within its coarse class."""

    question: str = dspy.InputField()
    coarse: Coarse = dspy.InputField(desc="the coarse answer type")
    fine: Fine = dspy.OutputField()


class QuestionClassifier(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.coarse_step = dspy.Predict(CoarseClass)
        self.fine_step = dspy.Predict(FineClass)

    def forward(self, question: str) -> dspy.Prediction:
        coarse = self.coarse_step(question=question).coarse
        fine = self.fine_step(question=question, coarse=coarse).fine
        return dspy.Prediction(coarse=coarse, fine=fine)


_coarse, _fine = exact_match("coarse"), exact_match("fine")


def metric(example, prediction, trace=None) -> float:
    """Mean of coarse and fine exact match: partial credit for the right coarse class."""
    return (_coarse(example, prediction) + _fine(example, prediction)) / 2


TASK = Task("trec", inputs=["question"], mapping={})
