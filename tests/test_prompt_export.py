"""`progopt show` and `progopt export`: each step exactly as its model receives it, captured without a model,
and exported as requests that give the same outputs outside progopt."""

from __future__ import annotations

import json
import urllib.request

import llama_cpp
import pytest

from optimizer.adapters import make_adapter
from optimizer.artifact import TrustPolicy
from optimizer.artifact.export import export_openai, render, text_template
from optimizer.artifact.gbnf import regex_to_gbnf
from optimizer.artifact.prompts import placeholder, step_views
from optimizer.cli import main
from optimizer.models import GEMMA3, SMOLLM2, ModelSpec
from programs.sentiment import TASK as SST2
from tests.fixtures.artifacts import rewrite, save_sentiment
from tests.security.crafted import crafted, evil_file

INPUTS = ["a gorgeous , witty film .", 'quotes " and {braces} and {{sentence}} and ünïcode', "line\nbreak"]


API = ModelSpec(name="openai/gpt-4o-mini", provider="litellm")


@pytest.mark.parametrize(("spec", "fmt"), [(GEMMA3, "json"), (GEMMA3, "compact"), (SMOLLM2, "json"),
                                           (SMOLLM2, "compact"), (SMOLLM2, "chat"), (API, "json"),
                                           (API, "compact")])
def test_a_filled_export_is_exactly_the_request_the_step_sends(tmp_path, spec, fmt):
    """No model runs here (a quick test): the template, filled, equals the request captured for that input."""
    path = save_sentiment(tmp_path / "a.json", spec=spec, format=fmt)
    template = export_openai(step_views(path))["classify"]
    assert template["variables"] == ["sentence"]
    for sentence in INPUTS:
        captured = export_openai(step_views(path, inputs={"sentence": sentence}))["classify"]
        assert render(template, {"sentence": sentence}) == captured["body"]
    body, local = template["body"], spec.provider == "local"
    assert ("prompt" in body) == (local and not spec.chat) and body["temperature"] == 0.0
    assert ("grammar" in body) == local  # a local model runs behind llama.cpp's server: grammars
    assert ("response_format" in body) == (not local)  # an API model: OpenAI's response_format


def test_show_prints_prompt_demos_constraint_and_strategy_without_a_model(tmp_path, capsys):
    path = save_sentiment(tmp_path / "a.json", spec=GEMMA3, n_demos=2)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "== step classify: model local/gemma3-270m (raw prompt (base model)), format json, strategy direct" in out
    assert "2 demos" in out and 'output constraint (json_schema): {"additionalProperties"' in out
    assert placeholder("sentence") in out
    assert main(["show", str(path), "--input", '{"sentence": "a witty film"}', "--json"]) == 0
    view = json.loads(capsys.readouterr().out)["classify"]
    assert "a witty film" in view["prompt"] and view["variables"] == []
    assert main(["show", str(path), "--step", "nope"]) == 2
    assert "no step 'nope'" in capsys.readouterr().err


def test_label_scoring_is_shown_and_its_export_says_it_sends_the_direct_equivalent(tmp_path, capsys):
    path = save_sentiment(tmp_path / "a.json", spec=GEMMA3, format="compact", strategy="score")
    view = step_views(path)["classify"]
    assert view.constraint is None and view.direct is not None and view.direct.constraint[0] == "regex"
    assert main(["export", str(path), "--to", "openai"]) == 0
    captured = capsys.readouterr()
    exported = json.loads(captured.out)["classify"]
    assert "label scoring" in exported["notes"][0] and "grammar" in exported["body"]
    assert "label scoring" in captured.err  # said on the terminal too, never silently
    assert main(["export", str(path), "--to", "text", "--out", str(tmp_path / "t.txt")]) == 0
    assert (tmp_path / "t.txt").read_text().startswith("# step classify") and "# note: label scoring" in \
        (tmp_path / "t.txt").read_text()
    assert text_template(view).endswith(view.direct.prompt)


@pytest.mark.parametrize(("pattern", "grammar"), [
    (r" (World|Sports|Business|Sci/Tech)\n?",
     'root ::= " " (("World" | "Sports" | "Business" | "Sci/Tech")) ("\\n")?\n'),
    (r"Answer: (-?\d+(\.\d+)?)\n?", 'root ::= "Answer: " (("-")? ([0-9])+ (("." ([0-9])+))?) ("\\n")?\n'),
    (r"[^\"\\]{0,20}a.b*?c{2,3}$", 'root ::= ([^"\\\\]){0,20} "a" [^\\n] ("b")* ("c"){2,3}\n'),
    (r'\[("[^"]{1,5}"(, )?)*\]', 'root ::= "[" (("\\"" ([^"]){1,5} "\\"" ((", "))?))* "]"\n')])
def test_regex_constraints_become_llama_cpp_grammars(pattern, grammar):
    assert regex_to_gbnf(pattern) == grammar  # the same language, rule by rule
    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None  # and llama.cpp parses it


def test_unsupported_regex_is_refused_not_exported_as_constrained():
    with pytest.raises(ValueError, match="no grammar form"):
        regex_to_gbnf(r"(a)\1")


def test_show_and_export_of_crafted_artifacts_run_no_code_and_reach_no_endpoint(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    evil = evil_file(tmp_path / "outside" / "evil.py", marker)
    path = crafted(tmp_path / "evil.json", f"{evil}:Sentiment", evil)
    for command in (["show"], ["export", "--to", "openai"], ["export", "--to", "mlflow"]):
        assert main([*command, str(path)]) == 2
        assert "program.ref" in capsys.readouterr().err
    remote = save_sentiment(tmp_path / "remote.json", spec=ModelSpec(name="openai/x", provider="litellm",
                                                                     api_base="http://127.0.0.1:9/v1"))
    rewrite(remote, lambda doc: doc["steps"]["classify"]["model"].update(api_base="https://collector.example/v1"))
    for command in (["show"], ["export", "--to", "openai"]):
        assert main([*command, str(remote)]) == 2
        assert "api_base" in capsys.readouterr().err
    assert not marker.exists()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_exported_requests_on_llama_cpp_server_give_progopts_outputs(tmp_path, llama_server, fmt):
    from optimizer.artifact import load_artifact

    path = save_sentiment(tmp_path / "a.json", spec=SMOLLM2, format=fmt)
    program = load_artifact(path, trust=TrustPolicy.from_env())
    request = export_openai(step_views(path))["classify"]
    base = llama_server.removesuffix("/v1")
    signature = dict(program.named_predictors())["classify"].signature
    for row in SST2.load("test", limit=6):
        ours = program(sentence=row.sentence).sentiment
        content = _post(base + request["endpoint"], {**render(request, {"sentence": row.sentence}),
                                                     "model": "smollm2"})["choices"][0]["message"]["content"]
        if fmt == "json":
            assert make_adapter(fmt).parse(signature, content)["sentiment"] == ours, (row.sentence, content)
        else:  # a chat model's compact answer carries its field prefix (the prompt cannot end inside a turn)
            assert content.strip() == f"Sentiment: {ours}", (row.sentence, content)


@pytest.mark.slow
def test_a_registered_prompt_loads_from_a_real_mlflow_server_and_formats_to_the_export(tmp_path, monkeypatch,
                                                                                       capsys):
    import mlflow.genai

    from tests.servers import free_port
    from tests.test_tracking import MLFLOW, serve

    path = save_sentiment(tmp_path / "a.json", spec=SMOLLM2)
    port, root = free_port(), tmp_path / "mlflow"
    root.mkdir()
    uri = f"http://127.0.0.1:{port}"
    with serve([MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root / 'store.db'}", "--artifacts-destination",
                str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
               f"{uri}/health", root / "server.log"):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert main(["export", str(path), "--to", "mlflow", "--name", "sst2", "--run-id", "r1"]) == 0
        assert json.loads(capsys.readouterr().out) == {"classify": "prompts:/sst2.classify/1"}
        prompt = mlflow.genai.load_prompt("prompts:/sst2.classify/1")
        exported = export_openai(step_views(path))["classify"]
        values = {"sentence": "a witty , gorgeous film ."}
        assert prompt.format(**values) == render(exported, values)["messages"]
        assert prompt.model_config["max_tokens"] == exported["body"]["max_tokens"]
        assert prompt.response_format == step_views(path)["classify"].constraint[1]
        assert prompt.tags["progopt.artifact_sha256"] == json.loads(path.read_text())["content_sha256"]
        assert prompt.tags["progopt.run_id"] == "r1"
