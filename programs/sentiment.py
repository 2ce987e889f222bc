"""Binary sentiment of a movie-review sentence (SST-2)."""

from typing import Literal

import dspy

from optimizer.data import Task
from optimizer.metrics import exact_match


class ClassifySentiment(dspy.Signature):
    """Classify the sentiment of a movie review sentence."""

    sentence: str = dspy.InputField(desc="a sentence from a movie review")
    sentiment: Literal["negative", "positive"] = dspy.OutputField()


class Sentiment(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(ClassifySentiment)

    def forward(self, sentence: str) -> dspy.Prediction:
        return self.classify(sentence=sentence)


metric = exact_match("sentiment")
TASK = Task("sst2", inputs=["sentence"], mapping={"sentiment": "label"})
