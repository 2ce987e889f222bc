"""The compact adapter: rendering, the output regex and parsing without models; then a round trip of every
supported output type on both local models."""

import re
from enum import Enum
from typing import Any, Literal

import dspy
import pytest
from dspy.lm15 import Message, Request, Response, Usage
from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel

from optimizer.accounting import Ledger
from optimizer.adapters.compact import CompactAdapter, output_regex, render_prompt
from optimizer.adapters.fields import FieldCodec
from optimizer.evaluate import evaluate
from optimizer.models import ModelPool
from optimizer.models.engine import RAW_METADATA_KEY, REGEX_METADATA_KEY, LlamaEngine
from optimizer.models.spec import GEMMA3, SMOLLM2, ModelSpec
from optimizer.space.build import build_program, make_adapter
from optimizer.space.variant import StepConfig
from programs.sentiment import TASK as SST2
from programs.sentiment import ClassifySentiment, Sentiment, metric

MODELS = ["local/smollm2-135m", "local/gemma3-270m"]


class Color(Enum):
    RED = "red"
    GREEN = "green"


class City(BaseModel):
    name: str
    founded: int


class Facts(dspy.Signature):
    """Describe the city."""

    city_name: str = dspy.InputField()
    kind: Literal["capital", "town"] = dspy.OutputField()
    population: int = dspy.OutputField()
    rating: float = dspy.OutputField()
    coastal: bool = dspy.OutputField()
    color: Color = dspy.OutputField()
    sights: list[str] = dspy.OutputField()
    record: City = dspy.OutputField()
    twin: int | None = dspy.OutputField()
    motto: str = dspy.OutputField()


FACTS = {"city_name": "Lisbon", "kind": "capital", "population": 545000, "rating": 4.5, "coastal": True,
         "color": Color.RED, "sights": ["Belem", "Alfama"], "record": City(name="Lisbon", founded=1147),
         "twin": None, "motto": "Very noble\nand always loyal"}


def test_prompt_is_instruction_then_field_lines_ending_at_the_first_output_prefix():
    demos = [{"sentence": "a gem .", "sentiment": "positive"}, {"sentence": "no label"}]
    assert render_prompt(ClassifySentiment, demos, {"sentence": "dull ."}) == (
        "Classify the sentiment of a movie review sentence.\n\n"
        "Sentence: a gem .\nSentiment: positive\n\n"
        "Sentence: dull .\nSentiment:")


def test_demo_values_render_as_the_model_must_write_them():
    prompt = render_prompt(Facts, [FACTS], {"city_name": "Porto"})
    block = prompt.split("\n\n")[1]
    assert block.splitlines() == [
        "City Name: Lisbon", "Kind: capital", "Population: 545000", "Rating: 4.5", "Coastal: true",
        "Color: red", 'Sights: ["Belem","Alfama"]', 'Record: {"name":"Lisbon","founded":1147}', "Twin: null",
        "Motto: Very noble and always loyal"]
    assert prompt.endswith("City Name: Porto\nKind:")


def test_rendered_demo_outputs_match_the_output_regex_and_parse_back():
    block = render_prompt(Facts, [FACTS], {"city_name": "Porto"}).split("\n\n")[1]
    completion = " " + block.split("Kind: ", 1)[1] + "\n"
    assert re.fullmatch(output_regex(Facts), completion)
    assert re.fullmatch(output_regex(Facts, first_prefix=True), "Kind:" + completion)
    parsed = CompactAdapter().parse(Facts, completion)
    expected = {k: v for k, v in FACTS.items() if k != "city_name"}
    assert parsed == {**expected, "motto": "Very noble and always loyal"}


@pytest.mark.parametrize(("annotation", "good", "bad"), [
    (Literal["a b", "c"], ["a b", "c"], ["a", "ab", "C"]),
    (Color, ["red", "green"], ["blue", '"red"']),
    (int, ["0", "-12", "123456789"], ["01", "1.5", "1234567890"]),
    (float, ["0", "-1.25", "3e5"], ["1.", ".5", "nan"]),
    (bool, ["true", "false"], ["True", "1"]),
    (list[int], ["[]", "[1, 2]", "[1,2,3,4,5,6,7,8]"], ["[1 2]", "[1,  2]", "[1,2,3,4,5,6,7,8,9]"]),
    (int | None, ["null", "7"], ["None", ""]),
    (str, ["anything at all"], ["", " lead", "two\nlines"]),
])
def test_field_patterns_accept_valid_values_only(annotation: Any, good: list[str], bad: list[str]):
    pattern = FieldCodec.of(annotation).pattern
    assert all(re.fullmatch(pattern, text) for text in good)
    assert not any(re.fullmatch(pattern, text) for text in bad)


def test_parse_rejects_a_missing_field_line_and_a_wrong_prefix():
    sig = dspy.Signature("q -> a: int, b: bool")
    assert CompactAdapter().parse(sig, " 3\nB: true") == {"a": 3, "b": True}
    for completion in (" 3", " 3\nC: true", " x\nB: true"):
        with pytest.raises(AdapterParseError):
            CompactAdapter().parse(sig, completion)


class Canned:
    """An engine that records its requests and replies with a canned text (an API model, to the adapter)."""

    supports_response_schema = True
    supported_params = LlamaEngine.supported_params

    def __init__(self, reply: str, spec: ModelSpec = SMOLLM2):
        self.reply, self.requests, self.spec = reply, [], spec

    def complete(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(id=None, model=request.model, message=Message.assistant(self.reply),
                        finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))


class CannedLlama(Canned, LlamaEngine):
    """The same, seen by the adapter as a local llama.cpp model."""


def _predict(engine: Any, name: str) -> tuple[dspy.Prediction, Ledger]:
    lm = dspy.LM(name, engine=engine, cache=False)
    ledger = Ledger()
    with dspy.context(lm=lm, adapter=CompactAdapter(), callbacks=[ledger]):
        return dspy.Predict(ClassifySentiment)(sentence="a gem ."), ledger


def test_base_model_gets_raw_text_ending_at_the_prefix_and_a_regex_for_the_value():
    engine = CannedLlama(" positive\n", GEMMA3)
    pred, ledger = _predict(engine, "local/fake-compact-base")
    request = engine.requests[0]
    assert request.config.extensions["metadata"] == {REGEX_METADATA_KEY: r" (negative|positive)\n?",
                                                     RAW_METADATA_KEY: True}
    assert request.messages[-1].text.endswith("Sentence: a gem .\nSentiment:")
    assert request.config.response_format is None
    assert pred.sentiment == "positive" and [r.valid for r in ledger.records] == [True]


def test_chat_model_gets_a_user_turn_and_a_regex_that_starts_with_the_prefix():
    engine = CannedLlama("Sentiment: negative", SMOLLM2)
    pred, ledger = _predict(engine, "local/fake-compact-chat")
    request = engine.requests[0]
    assert request.config.extensions["metadata"] == {REGEX_METADATA_KEY: r"Sentiment: (negative|positive)\n?"}
    assert [m.role for m in request.messages] == ["user"]
    assert request.messages[0].text.endswith("Sentence: a gem .")
    assert pred.sentiment == "negative" and [r.valid for r in ledger.records] == [True]


def test_an_unparseable_output_is_recorded_invalid_through_the_parse_callbacks():
    ledger = Ledger()
    lm = dspy.LM("local/fake-compact-bad", engine=CannedLlama(" maybe", GEMMA3), cache=False)
    with dspy.context(lm=lm, adapter=CompactAdapter(), callbacks=[ledger]), pytest.raises(AdapterParseError):
        dspy.Predict(ClassifySentiment)(sentence="a gem .")
    assert [r.valid for r in ledger.records] == [False]


def test_api_engine_gets_messages_and_a_json_schema_and_the_reply_parses_as_json():
    engine = Canned('{"sentiment": "negative"}')
    pred, ledger = _predict(engine, "openai/fake-compact")
    request = engine.requests[0]
    assert request.config.response_format["type"] == "json_schema"
    assert "metadata" not in (request.config.extensions or {})
    assert pred.sentiment == "negative" and [r.valid for r in ledger.records] == [True]


@pytest.mark.slow
def test_api_model_over_http_answers_json_that_parses(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-secret")
    pool = ModelPool.from_names(["openai/smollm2"], api_base=llama_server, schema_style="json_object")
    step = StepConfig(instruction=ClassifySentiment.instructions, model="openai/smollm2", format="compact")
    ev = evaluate(build_program(Sentiment(), {"classify": step}, pool.lm), SST2.load("test", limit=5), metric,
                  show_progress=False)
    failures = [(r.error, [(c.text, c.finish_reason, c.error) for c in r.calls]) for r in ev.results if not r.valid]
    assert ev.summary().validity_rate == 1.0 and ev.summary().lm_calls == 5, failures
    assert all(r.prediction["sentiment"] in {"negative", "positive"} for r in ev.results)


def test_compact_is_a_registered_prompt_format():
    assert isinstance(make_adapter("compact"), CompactAdapter)


class Made(BaseModel):
    word: str
    size: int


ROUND_TRIP: list[tuple[Any, list[tuple[str, Any]], type | tuple[type, ...]]] = [
    (str, [("cat", "A small furry pet."), ("sun", "The star at the centre of our solar system.")], str),
    (int, [("three", 3), ("ten", 10)], int),
    (float, [("half", 0.5), ("two and a half", 2.5)], float),
    (bool, [("The sky is blue.", True), ("Fish can fly.", False)], bool),
    (Literal["animal", "plant"], [("dog", "animal"), ("oak", "plant")], str),
    (list[str], [("colors", ["red", "blue"]), ("pets", ["cat", "dog"])], list),
    (Made, [("cat", Made(word="cat", size=3)), ("horse", Made(word="horse", size=5))], Made),
    (int | None, [("seven", 7), ("nothing", None)], (int, type(None))),
]
QUERIES = ["tree", "five", "a tiny boat"]


def round_trip(lm: dspy.LM, adapter: dspy.Adapter, annotation: Any, demos: list[tuple[str, Any]],
               python_type: type | tuple[type, ...]) -> None:
    """Ask for an ``annotation``-typed answer with ``demos`` through ``adapter``: every call parses first time."""
    sig = dspy.Signature({"topic": (str, dspy.InputField()), "answer": (annotation, dspy.OutputField())},
                         "Answer about the topic.")
    predict = dspy.Predict(sig)
    predict.demos = [dspy.Example(topic=t, answer=a) for t, a in demos]
    ledger = Ledger()
    with dspy.context(lm=lm, adapter=adapter, callbacks=[ledger]):
        answers = [predict(topic=q).answer for q in QUERIES]
    assert all(isinstance(a, python_type) for a in answers), answers
    assert [r.valid for r in ledger.records] == [True] * len(QUERIES), [r.text for r in ledger.records]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("annotation", "demos", "python_type"), ROUND_TRIP,
                         ids=["str", "int", "float", "bool", "literal", "list", "model", "optional"])
@pytest.mark.slow
def test_every_output_type_round_trips_on_the_local_models(pool, model, annotation, demos, python_type):
    round_trip(pool.lm(model), CompactAdapter(), annotation, demos, python_type)
