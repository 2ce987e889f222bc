"""The import rules of ARCHITECTURE.md hold: the import-linter contracts in pyproject.toml (layers import
downward, no circle between sibling packages or modules, value modules import nothing of the compile path)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(monkeypatch):
    from importlinter import cli

    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == cli.EXIT_STATUS_SUCCESS


def test_the_contracts_catch_an_upward_import(tmp_path, monkeypatch):
    """The layers contract fails on a package whose bottom layer imports its top one (so the test above can fail)."""
    from importlinter import cli

    package = tmp_path / "layered"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "top.py").write_text("from layered import bottom\n")
    (package / "bottom.py").write_text("from layered import top\n")
    (tmp_path / "setup.toml").write_text('[tool.importlinter]\nroot_package = "layered"\n\n'
                                         '[[tool.importlinter.contracts]]\nname = "layers"\ntype = "layers"\n'
                                         'layers = ["layered.top", "layered.bottom"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.lint_imports(config_filename="setup.toml", no_cache=True) != cli.EXIT_STATUS_SUCCESS


