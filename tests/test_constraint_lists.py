"""A JSON-Schema constraint bounds every list (the json format, like compact and chat): small models
otherwise repeat items until max_tokens."""

from __future__ import annotations

import json
import re

from optimizer.models.constrain import LIST_MAX_ITEMS, Constraint


def _response_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}


ENTITIES = {"type": "object", "required": ["entities"], "properties": {"entities": {
    "type": "array", "items": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}}


def _entities(n: int) -> str:
    return json.dumps({"entities": [{"text": f"e{i}"} for i in range(n)]}, separators=(",", ":"))


def test_an_unbounded_list_gets_the_default_bound_and_the_regex_enforces_it():
    constraint = Constraint.from_response_format(_response_format(ENTITIES))
    assert json.loads(constraint.pattern)["properties"]["entities"]["maxItems"] == LIST_MAX_ITEMS
    regex = re.compile(constraint.regex())
    assert regex.fullmatch(_entities(0)) and regex.fullmatch(_entities(LIST_MAX_ITEMS))
    assert not regex.fullmatch(_entities(LIST_MAX_ITEMS + 1))


def test_a_list_with_its_own_bound_keeps_it():
    schema = json.loads(json.dumps(ENTITIES))
    schema["properties"]["entities"]["maxItems"] = 2
    constraint = Constraint.from_response_format(_response_format(schema))
    assert json.loads(constraint.pattern)["properties"]["entities"]["maxItems"] == 2
    assert not re.fullmatch(constraint.regex(), _entities(3))
