"""Four-way news topic classification (AG News)."""

from typing import Literal

import dspy

from optimizer.data import Task
from optimizer.metrics import exact_match


class ClassifyTopic(dspy.Signature):
    """Classify the topic of a news article."""

    text: str = dspy.InputField(desc="headline and first sentence of a news article")
    topic: Literal["World", "Sports", "Business", "Sci/Tech"] = dspy.OutputField()


class NewsTopic(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(ClassifyTopic)

    def forward(self, text: str) -> dspy.Prediction:
        return self.classify(text=text)


metric = exact_match("topic")
TASK = Task("ag_news", inputs=["text"], mapping={"topic": "label"})
