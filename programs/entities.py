"""Named-entity extraction as a typed list (CoNLL-2003)."""

from typing import Literal

import dspy
from pydantic import BaseModel, ConfigDict

from optimizer.data import Task
from optimizer.metrics import entity_f1


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    type: Literal["PER", "ORG", "LOC", "MISC"]


class ExtractEntities(dspy.Signature):
    """Extract the named entities of the sentence: people (PER), organisations (ORG), locations (LOC)
    and other names (MISC). Copy each entity's text exactly; return an empty list if there is none."""

    text: str = dspy.InputField(desc="a tokenised news sentence")
    entities: list[Entity] = dspy.OutputField()


class EntityExtractor(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.extract = dspy.Predict(ExtractEntities)

    def forward(self, text: str) -> dspy.Prediction:
        return self.extract(text=text)


metric = entity_f1("entities")
TASK = Task("conll2003", inputs=["text"])
