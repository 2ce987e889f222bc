"""ARCHITECTURE.md's code map is the one map of the code, and it stays true: every module of ``optimizer/``
(its ``__init__.py`` files aside) is named in it by its backticked path relative to ``optimizer/``, every
backticked ``*.py`` path in it (``tests/`` aside) is a file of ``optimizer/``, and every test file the
document cites exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optimizer"
DOC = ROOT / "ARCHITECTURE.md"


def _section(text: str, heading: str) -> str:
    """The text under a level-2 ``heading``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"ARCHITECTURE.md has no '## {heading}' section"
    return match[1]


def _modules() -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}


def test_the_code_map_names_every_module_and_only_modules_that_exist():
    code_map = _section(DOC.read_text(encoding="utf-8"), "Code map")
    named = set(re.findall(r"`([^`\s]+\.py)`", code_map))
    modules = _modules()
    assert len(modules) > 80  # the walk found the package
    missing = sorted(modules - named)
    stale = sorted(n for n in named if not n.startswith("tests/") and not (PACKAGE / n).is_file())  # tests: below
    assert not missing, ("modules of optimizer/ missing from ARCHITECTURE.md's code map (add a line naming each by "
                         "its backticked path relative to optimizer/):\n  " + "\n  ".join(missing))
    assert not stale, ("ARCHITECTURE.md's code map names modules that do not exist under optimizer/ (paths are "
                       "relative to optimizer/; remove or fix each line):\n  " + "\n  ".join(stale))


def test_every_test_the_document_cites_exists():
    cited = set(re.findall(r"`(tests/[^`\s]*)`", DOC.read_text(encoding="utf-8")))
    assert cited  # the invariants name their tests
    absent = []
    for ref in sorted(cited):
        path, _, name = ref.partition("::")
        file = ROOT / path
        if not file.exists():
            absent.append(f"{ref} (no such file or directory)")
        elif name and not re.search(rf"^\s*(?:async )?def {re.escape(name)}\(", file.read_text(encoding="utf-8"),
                                    re.MULTILINE):
            absent.append(f"{ref} (no test {name!r} in {path})")
    assert not absent, "ARCHITECTURE.md cites tests that do not exist:\n  " + "\n  ".join(absent)
