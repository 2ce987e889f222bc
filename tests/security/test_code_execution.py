"""An artifact never chooses code: a crafted ``program.ref`` runs nothing through ``load``, ``validate``,
``run`` or the MLflow model, the refusal names the field, and ``sys.path`` is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import optimizer as progopt
from optimizer.artifact import ArtifactIntegrityError, ArtifactTrustError, TrustPolicy, load_artifact
from optimizer.cli import main
from tests.fixtures.artifacts import save_sentiment, write_program
from tests.security.crafted import crafted, evil_file

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "compiled-program.v1.json"
PROGOPT = Path(sys.executable).with_name("progopt")


def _attack(kind: str, tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch, links: list[Path]) -> str:
    """The program reference of one attack; every file it names writes ``marker`` when run."""
    outside = tmp_path / "outside"
    if kind == "absolute path":
        return f"{evil_file(outside / 'evil.py', marker)}:Sentiment"
    if kind == "dot-dot":
        evil_file(outside / "evil.py", marker)
        return f"programs/../../../../../../../../{outside.relative_to('/')}/evil.py:Sentiment"
    if kind == "symlink out of the project":
        link = ROOT / "programs" / f"link_{os.getpid()}.py"
        link.symlink_to(evil_file(outside / "evil.py", marker))
        links.append(link)
        return f"programs/{link.name}:Sentiment"
    if kind == "parent package __init__":
        evil_file(outside / "evilpkg" / "__init__.py", marker)
        evil_file(outside / "evilpkg" / "prog.py", marker.with_suffix(".prog"))
        monkeypatch.syspath_prepend(str(outside))  # importable, but not a trusted root nor a distribution
        return "evilpkg.prog:Sentiment"
    raise AssertionError(kind)


@pytest.fixture
def links():
    """Symlinks a test plants inside the repository, removed afterwards."""
    made: list[Path] = []
    yield made
    for link in made:
        link.unlink(missing_ok=True)


ATTACKS = ["absolute path", "dot-dot", "symlink out of the project", "parent package __init__"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_crafted_program_ref_runs_no_code_through_load_validate_or_run(tmp_path, monkeypatch, capsys, links,
                                                                         attack):
    monkeypatch.chdir(ROOT)
    marker = tmp_path / "marker"
    ref = _attack(attack, tmp_path, marker, monkeypatch, links)
    source = Path(ref.partition(":")[0]) if ref.startswith("/") else None
    path = crafted(tmp_path / "evil.json", ref, source)

    with pytest.raises(ArtifactTrustError) as info:
        load_artifact(path)
    assert info.value.json_path == "program.ref"
    with pytest.raises(ArtifactTrustError):
        progopt.load(str(path))
    assert main(["validate", str(path)]) == 2
    assert "program.ref" in capsys.readouterr().err
    assert main(["run", str(path), "--input", '{"sentence": "a film"}']) == 2
    assert "program.ref" in capsys.readouterr().err
    assert not marker.exists() and not marker.with_suffix(".prog").exists()
    assert not any(name.startswith("evilpkg") for name in sys.modules)


def test_the_served_mlflow_model_refuses_a_crafted_program_ref(tmp_path, monkeypatch):
    import mlflow

    from optimizer.tracking import log_compiled_model

    monkeypatch.chdir(ROOT)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    marker = tmp_path / "marker"
    evil = evil_file(tmp_path / "outside" / "evil.py", marker)
    path = crafted(tmp_path / "evil.json", f"{evil}:Sentiment", evil)
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("security", artifact_location=str(tmp_path / "store")))
    # MLflow loads the model once to check the input example: that load is refused too (a warning, not code)
    info = log_compiled_model(path, run_id=run.info.run_id, tracking_uri=uri)
    with pytest.raises(ArtifactTrustError, match="program.ref"):
        mlflow.pyfunc.load_model(info.model_uri)  # what `mlflow models serve` runs before serving
    assert not marker.exists()


def test_a_changed_source_in_a_trusted_root_is_refused_before_import(tmp_path):
    marker = tmp_path / "marker"
    ref = write_program(tmp_path)
    saved = save_sentiment(tmp_path / "a.json", program_ref=ref)
    evil_file(Path(ref.partition(":")[0]), marker)  # same path, new bytes: the saved hash no longer matches
    with pytest.raises(ArtifactIntegrityError) as info:
        load_artifact(saved, trust=TrustPolicy.from_env(trust=[tmp_path]))
    assert info.value.json_path == "program.source_sha256" and not marker.exists()


def test_the_program_class_given_by_the_caller_is_used_without_any_import(tmp_path, monkeypatch, capsys):
    from programs.sentiment import Sentiment

    monkeypatch.chdir(ROOT)
    marker = tmp_path / "marker"
    evil = evil_file(tmp_path / "outside" / "evil.py", marker)
    path = crafted(tmp_path / "evil.json", f"{evil}:Sentiment", evil)
    assert load_artifact(path, program=Sentiment).classify
    assert main(["validate", str(path), "--program", "programs/sentiment.py:Sentiment"]) == 0
    assert "REFUSED" in capsys.readouterr().out  # validate still says where the artifact's own ref points
    assert not marker.exists()


def test_loading_leaves_sys_path_unchanged(tmp_path):
    nested = tmp_path / "x" / "y"
    nested.mkdir(parents=True)
    saved = save_sentiment(tmp_path / "a.json", program_ref=write_program(nested))
    before = list(sys.path)
    load_artifact(saved, trust=TrustPolicy.from_env(trust=[tmp_path]))
    assert sys.path == before


def _progopt(*args: str, cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROGOPT_TRUST")}
    if config is not None:
        env["PROGOPT_CONFIG_DIR"] = str(config)
    return subprocess.run([str(PROGOPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_reference_resolves_the_same_from_any_working_directory_and_only_by_choice(tmp_path):
    saved = save_sentiment(tmp_path / "compiled.json", program_ref=f"{ROOT / 'programs' / 'sentiment.py'}:Sentiment")
    assert json.loads(saved.read_text())["program"]["ref"] == "programs/sentiment.py:Sentiment"  # project-relative
    for artifact in (FIXTURE, saved):
        for cwd in (ROOT, tmp_path):  # the session's trust file trusts the checkout, as a compile here records
            chosen = _progopt("validate", str(artifact), cwd=cwd)
            assert chosen.returncode == 0, chosen.stderr
            assert f"-> {ROOT / 'programs' / 'sentiment.py'} (trusted)" in chosen.stdout
        # with nothing chosen, not even the checkout the command runs in is trusted: no discovery
        undiscovered = _progopt("validate", str(artifact), cwd=ROOT, config=tmp_path / "empty")
        assert undiscovered.returncode == 2 and "program.ref" in undiscovered.stderr
        flagged = _progopt("validate", str(artifact), "--trust", str(ROOT), cwd=tmp_path, config=tmp_path / "empty")
        assert flagged.returncode == 0, flagged.stderr
