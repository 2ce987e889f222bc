"""Question classification (TREC), coarse classes only: one step, six labels."""

import dspy

from optimizer.data import Task
from optimizer.metrics import exact_match
from programs.trec import CoarseClass


class CoarseQuestionClassifier(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(CoarseClass)

    def forward(self, question: str) -> dspy.Prediction:
        return self.classify(question=question)


metric = exact_match("coarse")
TASK = Task("trec", inputs=["question"], mapping={})
