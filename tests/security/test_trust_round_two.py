"""Artifact trust, round two: an artifact runs only code the user trusted, and nothing runs before the check.

Each test is one attack class as an outsider who read the README's trust section would try it: a module of
an installed distribution, a package or bytecode shadowing the hashed file, a trusted root discovered from a
planted project marker, roots and files other users can write, and program code that exits or signals. Every
evil file writes a marker when it runs; the assertion is always that no marker exists."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optimizer import refs
from optimizer.artifact import ArtifactProgramError, ArtifactTrustError, TrustPolicy, load_artifact
from optimizer.artifact.errors import SignatureDriftError
from optimizer.artifact.trust_file import CONFIG_DIR_ENV, read_trust_file, remember_root
from optimizer.cli import main
from tests.fixtures.artifacts import PROGRAM_SOURCE, write_program
from tests.security.crafted import EVIL_PROGRAM, crafted, evil_file, plant_bytecode

GOOD = PROGRAM_SOURCE.format(field="sentence", output_type='Literal["negative", "positive"]', step="classify")
AS_ROOT = os.getuid() == 0


@pytest.fixture(autouse=True)
def no_saved_trust(tmp_path, monkeypatch):
    """Nothing trusted but what a test grants: an empty trust file of the test's own."""
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused_everywhere(artifact: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """``load``, ``validate`` and ``run`` all refuse with an ArtifactError at program.ref; returns the reason."""
    with pytest.raises((ArtifactTrustError, ArtifactProgramError)) as info:
        load_artifact(artifact, trust=TrustPolicy.from_env(trust=[f for f in flags if f]))
    assert info.value.json_path == "program.ref"
    trust = [a for f in flags if f for a in ("--trust", f)]
    assert main(["validate", str(artifact), *trust]) == 2
    err = capsys.readouterr().err
    assert "INVALID Artifact" in err and "program.ref" in err, err
    assert main(["run", str(artifact), *trust, "--input", '{"sentence": "a film"}']) == 2
    assert "program.ref" in capsys.readouterr().err
    return str(info.value)


def _fake_distribution(site: Path, name: str, module_source: str) -> Path:
    """An installed distribution ``name`` (dist-info and a package ``name`` with a module ``side``)."""
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "side.py").write_text(module_source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n{name}/side.py,,\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    return package / "side.py"


def test_a_module_of_an_installed_distribution_runs_only_when_the_user_names_it(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    site = tmp_path / "site"
    side = _fake_distribution(site, "evildist", EVIL_PROGRAM.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(site))
    artifact = crafted(tmp_path / "a.json", "evildist.side:Sentiment", side)
    assert "not trusted unless named" in _refused_everywhere(artifact, capsys)
    assert not marker.exists() and "evildist" not in sys.modules
    # named by the user: the verified bytes run (the marker proves it; its signature then differs, refused)
    with pytest.raises(SignatureDriftError):
        load_artifact(artifact, trust=TrustPolicy.from_env(packages=["evildist"]))
    assert marker.exists()


@pytest.mark.parametrize("module", ["pip.__main__", "pip._internal.cli.main", "setuptools.__main__",
                                    "antigravity", "this", "idlelib.idle", "json.tool", "pytest.__main__"])
def test_real_installed_and_standard_modules_are_never_imported(tmp_path, capsys, module):
    spec = importlib.util.find_spec(module.split(".")[0])
    assert spec is not None
    before = set(sys.modules)
    artifact = crafted(tmp_path / "a.json", f"{module}:Sentiment")
    _refused_everywhere(artifact, capsys)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] == module.split(".")[0]}


def test_a_package_beside_the_hashed_module_is_refused_before_either_runs(tmp_path, capsys):
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    root.mkdir()
    (root / "prog.py").write_text(GOOD)
    evil_file(root / "prog" / "__init__.py", marker)
    artifact = crafted(tmp_path / "a.json", "prog:Sentiment", root / "prog.py")
    assert "shadows prog.py" in _refused_everywhere(artifact, capsys, str(root))
    assert not marker.exists()


def test_an_extension_module_beside_the_hashed_module_is_refused(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "prog.py").write_text(GOOD)
    (root / "prog.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    artifact = crafted(tmp_path / "a.json", "prog:Sentiment", root / "prog.py")
    assert "would be imported instead" in _refused_everywhere(artifact, capsys, str(root))


@pytest.mark.parametrize("ref", ["prog:Sentiment", "prog.py:Sentiment"])
def test_planted_bytecode_never_runs_the_verified_source_does(tmp_path, ref):
    marker = tmp_path / "marker"
    root = tmp_path / "root"
    root.mkdir()
    source = root / "prog.py"
    plant_bytecode(source, GOOD, EVIL_PROGRAM.format(marker=str(marker)))
    naive = subprocess.run([sys.executable, "-c", "import prog"], cwd=root, capture_output=True, text=True)
    assert naive.returncode == 0 and marker.exists(), naive.stderr  # the attack works on a plain import
    marker.unlink()
    artifact = crafted(tmp_path / "a.json", ref, source)
    program = load_artifact(artifact, trust=TrustPolicy.from_env(trust=[root]))
    assert program.classify and not marker.exists()


def test_a_project_marker_in_a_shared_parent_trusts_nothing(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    shared = tmp_path / "shared"
    (shared / "work").mkdir(parents=True)
    shared.chmod(0o1777)
    (shared / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    evil_file(shared / "work" / "prog.py", marker)
    artifact = crafted(tmp_path / "a.json", "work/prog.py:Sentiment", shared / "work" / "prog.py")
    monkeypatch.chdir(shared / "work")
    assert refs.portable("prog.py:Sentiment").startswith("/")  # a shared folder is no project
    _refused_everywhere(artifact, capsys)
    assert not marker.exists()


def _unsafe_root(tmp_path: Path, how: str) -> tuple[Path, Path]:
    root = tmp_path / "root"
    root.mkdir()
    source = root / "prog.py"
    source.write_text(GOOD)
    if how == "root writable by others":
        root.chmod(0o1777)
    elif how == "file writable by others":
        source.chmod(0o666)
    elif how == "file group-writable by another group":
        os.chown(source, -1, 12345)
        source.chmod(0o664)
    elif how == "file owned by another user":
        os.chown(source, 65534, -1)
    elif how == "subfolder writable by others":
        (root / "sub").mkdir()
        source = root / "sub" / "prog.py"
        source.write_text(GOOD)
        (root / "sub").chmod(0o777)
    elif how == "parent of the root renamable by others":
        tmp_path.chmod(0o777)
    return root, source


UNSAFE = ["root writable by others", "file writable by others", "subfolder writable by others",
          "parent of the root renamable by others",
          pytest.param("file owned by another user", marks=pytest.mark.skipif(not AS_ROOT, reason="needs chown")),
          pytest.param("file group-writable by another group",
                       marks=pytest.mark.skipif(not AS_ROOT, reason="needs chown"))]


@pytest.mark.parametrize("how", UNSAFE)
def test_code_that_other_users_can_write_is_refused_like_ssh_refuses_key_files(tmp_path, capsys, how):
    root, source = _unsafe_root(tmp_path, how)
    try:
        artifact = crafted(tmp_path / "a.json", f"{source.relative_to(root)}:Sentiment", source)
        reason = _refused_everywhere(artifact, capsys, str(root))
        assert "other user" in reason
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("action", ["raise SystemExit(2)", "import sys; sys.exit('bye')", "raise KeyboardInterrupt",
                                    "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
                                    "import os, signal; os.kill(os.getpid(), signal.SIGINT)",
                                    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\nraise SystemExit"])
@pytest.mark.parametrize("when", ["import", "init"])
def test_exits_and_signals_from_program_code_become_artifact_errors(tmp_path, capsys, action, when):
    root = tmp_path / "root"
    root.mkdir()
    source = root / "prog.py"
    code = GOOD.replace("super().__init__()", f"super().__init__()\n        {action.replace(chr(10), '; ')}") \
        if when == "init" else f"{action}\n{GOOD}"
    source.write_text(code)
    before = signal.getsignal(signal.SIGTERM)
    artifact = crafted(tmp_path / "a.json", f"{source}:Sentiment", source)
    with pytest.raises(ArtifactProgramError, match="exited|interrupted|signal"):
        load_artifact(artifact, trust=TrustPolicy.from_env(trust=[root]))
    assert main(["validate", str(artifact), "--trust", str(root)]) == 2
    assert "INVALID ArtifactProgramError" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_compile_records_the_users_choice_in_a_trust_file_the_user_can_read(tmp_path):
    trust_file = tmp_path / "config" / "trust.toml"
    assert remember_root(tmp_path / "proj", trust_file) and not remember_root(tmp_path / "proj" / "sub", trust_file)
    assert read_trust_file(trust_file).roots == ((tmp_path / "proj").resolve(),)
    assert "progopt compile" in trust_file.read_text() and trust_file.stat().st_mode & 0o077 == 0
    trust_file.chmod(0o666)  # another user could add roots: the file is ignored, and says so
    policy = TrustPolicy.from_env()
    assert policy.roots == () and "writable by other users" in policy.notes[0]
    with pytest.raises(ValueError, match="ignored"):
        remember_root(tmp_path / "other", trust_file)


@pytest.mark.slow
def test_a_newcomers_round_trip_works_as_printed_outside_any_project(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "newcomer"
    folder.mkdir()
    (folder / "prog.py").write_text("from programs.sentiment import TASK, Sentiment, metric  # noqa: F401\n")
    monkeypatch.chdir(folder)
    assert main(["compile", "prog.py:Sentiment", "--budget", "30", "--train-limit", "20", "--val-limit", "6",
                 "--limit", "6", "--minibatch", "3", "--proposer", "none", "--teacher", "none",
                 "--tracking-uri", "none", "--out", "a.json"]) == 0
    err = capsys.readouterr().err
    assert f"trusted {folder.resolve()}" in err and str(tmp_path / "config" / "trust.toml") in err
    assert main(["run", "a.json", "--input", '{"sentence": "a gorgeous , witty film ."}']) == 0
    assert "sentiment" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # and from anywhere else, by the recorded choice
    assert main(["validate", str(folder / "a.json")]) == 0


def test_trusted_file_references_ignore_a_stale_project_guess(tmp_path):
    """The old rule trusted the working directory's project; a plain file there is now untrusted until chosen."""
    (tmp_path / "proj").mkdir()
    ref = write_program(tmp_path / "proj")
    with pytest.raises(refs.UntrustedReferenceError):
        refs.locate(ref, roots=[])
    assert refs.locate(ref, roots=[tmp_path / "proj"]).path == Path(ref.partition(":")[0]).resolve()


@pytest.mark.parametrize(("name", "allowed"), [
    ("huggingface/https://collector.example.com/v1", False), ("huggingface/http://127.0.0.1:9/v1/../x", True),
    ("huggingface//collector.example.com", False), ("openai/gpt-4o-mini", True)])
def test_an_endpoint_inside_a_litellm_model_name_passes_the_endpoint_policy(tmp_path, name, allowed):
    """LiteLLM takes some providers' endpoint from the model string itself: the same policy as api_base."""
    from optimizer.artifact.trust import checked_models
    from optimizer.models import ModelSpec
    from tests.fixtures.artifacts import rewrite, save_sentiment

    path = save_sentiment(tmp_path / "a.json", spec=ModelSpec(name="openai/gpt-4o-mini", provider="litellm"))
    doc = json.loads(rewrite(path, lambda d: d["steps"]["classify"]["model"].update(name=name)).read_text())
    if allowed:
        assert checked_models(doc, path, TrustPolicy.from_env())["classify"]["name"] == name
    else:
        with pytest.raises(ArtifactTrustError) as info:
            checked_models(doc, path, TrustPolicy.from_env())
        assert info.value.json_path == "steps.classify.model.name"
