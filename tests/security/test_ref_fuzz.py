"""Property-based fuzz of the program references an artifact may carry: paths (absolute, relative, ``..``,
dot segments, backslashes, unicode look-alikes, NULs, surrogates), module names, symlinks out of the root,
package and bytecode shadows, parent-package ``__init__`` files and installed-package modules.

The tree: one trusted root and, around it, everything an attacker could reach (files outside the root, a
symlink out of it, a package shadowing a module, planted bytecode, parent ``__init__`` files, an untrusted
installed distribution); every file logs a tag when it runs. Property: per reference, at most one file runs,
and it is the real file under the trusted root that the reference names (its verified bytes, never the
cache); every refusal is a :class:`ProgramReferenceError`; nothing else raises."""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import refs
from tests.fixtures.artifacts import PROGRAM_SOURCE
from tests.security.crafted import plant_bytecode

GOOD = PROGRAM_SOURCE.format(field="sentence", output_type='Literal["negative", "positive"]', step="classify")
FILE_PIECES = ["good.py", "good", "shadow.py", "cached.py", "link.py", "sub", "inner.py", "out", "evil.py", "..",
               ".", "", "outside", "trusted", "evilpkg", "prog.py", "pkg", "mod.py", "\uff47ood.py", "good.py ",
               "GOOD.PY", "%2e%2e", "~", "__pycache__", "cached.cpython-311.pyc", "__init__.py", "shadow", "fuzzdist",
               "side.py", "\x00", "\ud800", "x" * 300]
MODULE_PIECES = ["good", "shadow", "cached", "link", "sub", "inner", "out", "evil", "evilpkg", "prog", "pkg", "mod",
                 "fuzzdist", "side", "pip", "__main__", "antigravity", "this", "json", "tool", "__init__",
                 "\uff47ood", "outside", "trusted", "", "1x"]


class Tree:
    """The fuzz tree under ``base``: ``trusted/`` (the root), ``outside/``, and an untrusted distribution.
    Every file, when it runs, appends its tag to ``log``: ``root:<path>`` under the root (good programs, and
    package ``__init__`` files that only a direct reference may run), ``outside:<path>`` elsewhere, and
    ``bytecode`` for the planted cache."""

    def __init__(self, base: Path):
        self.base, self.root, self.log = base, base / "trusted", base / "ran.log"
        outside = base / "outside"
        inside = {"good.py": GOOD, "shadow.py": GOOD, "shadow/__init__.py": "", "cached.py": GOOD,
                  "sub/inner.py": GOOD, "pkg/__init__.py": "", "pkg/mod.py": GOOD}
        for path, program in inside.items():
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_text(self._tagged(f"root:{path}", program))
        for path in ("evil.py", "evilpkg/__init__.py", "evilpkg/prog.py", "site/fuzzdist/__init__.py",
                     "site/fuzzdist/side.py"):
            (outside / path).parent.mkdir(parents=True, exist_ok=True)
            (outside / path).write_text(self._tagged(f"outside:{path}", GOOD))
        info = outside / "site" / "fuzzdist-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fuzzdist\nVersion: 1.0\n")
        (info / "top_level.txt").write_text("fuzzdist\n")
        (self.root / "link.py").symlink_to(outside / "evil.py")
        (self.root / "sub" / "out").symlink_to(outside)
        cached = self.root / "cached.py"
        plant_bytecode(cached, cached.read_text(), self._tagged("bytecode", GOOD))
        self.shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (self.root / "good.py", outside / "evil.py")]
        self.shas.append(None)
        self.path_entries = [str(outside), str(outside / "site"), str(self.root)]

    def _tagged(self, tag: str, program: str) -> str:
        return f"with open({str(self.log)!r}, 'a') as _log:\n    _log.write({tag!r} + '\\n')\n{program}"

    def ran(self) -> list[str]:
        """The tags of the files that ran since the last call (and forget them)."""
        tags = self.log.read_text().split() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return tags


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory):
    made = Tree(tmp_path_factory.mktemp("reffuzz"))
    saved = list(sys.path)
    sys.path[:0] = made.path_entries  # everything importable: only the policy stands in the way
    yield made
    sys.path[:] = saved


def _file_refs() -> st.SearchStrategy[str]:
    pieces = st.lists(st.sampled_from(FILE_PIECES) | st.text(max_size=6), min_size=1, max_size=5)
    return st.builds(lambda prefix, parts, sep, suffix: prefix + sep.join(parts) + suffix,
                     st.sampled_from(["", "/", "./", "../", "{root}/", "{base}/", "{outside}/", "~/"]), pieces,
                     st.sampled_from(["/", "\\", "//", "/./"]), st.sampled_from(["", ".py", ".pyc", "/"]))


def _targeted_refs() -> st.SearchStrategy[str]:
    """References aimed at the tree's traps: each good file, shadow, symlink and package by every spelling."""
    files = ["good.py", "shadow.py", "cached.py", "link.py", "sub/inner.py", "sub/out/evil.py", "pkg/mod.py",
             "pkg/__init__.py", "shadow/__init__.py", "__pycache__/cached.cpython-311.pyc", "sub/out/evilpkg/prog.py"]
    prefixes = ["", "{root}/", "./", "{root}/./", "{root}/sub/../", "sub/../", "{outside}/../trusted/", "{base}/"]
    modules = ["good", "shadow", "cached", "link", "sub.inner", "sub.out.evil", "pkg.mod", "pkg", "evilpkg.prog",
               "evilpkg", "fuzzdist.side", "fuzzdist", "pip.__main__", "shadow.__init__", "pkg.__init__"]
    return st.builds(str.__add__, st.sampled_from(prefixes), st.sampled_from(files)) | st.sampled_from(modules)


def _module_refs() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(MODULE_PIECES) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
                    min_size=1, max_size=4).map(".".join)


@settings(max_examples=1500, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=_targeted_refs() | _targeted_refs() | _file_refs() | _module_refs(), sha=st.integers(0, 2),
       attr=st.sampled_from(["Sentiment", "os"]))
def test_no_reference_runs_anything_but_verified_bytes_under_the_trusted_root(tree, target, sha, attr):
    for name, path in {"{root}": tree.root, "{base}": tree.base, "{outside}": tree.base / "outside"}.items():
        target = target.replace(name, str(path))
    tree.ran()
    try:
        obj = refs.resolve_trusted(f"{target}:{attr}", roots=[tree.root], sha256=tree.shas[sha])
    except refs.ProgramReferenceError:
        obj = None
    ran = tree.ran()
    assert len(ran) <= 1 and all(tag.startswith("root:") for tag in ran), f"{target!r} ran {ran}"
    if ran:  # the one file that ran is the real file under the root that the reference names
        assert refs.locate(f"{target}:{attr}", [tree.root]).path == (tree.root / ran[0][5:]).resolve()
    if obj is not None:  # (a module already run for the same file and bytes is reused, and logs nothing)
        assert Path(inspect.getfile(obj)).resolve() == refs.locate(f"{target}:{attr}", [tree.root]).path
    assert not any(m.split(".")[0] in {"evilpkg", "fuzzdist", "evil"} for m in sys.modules)
