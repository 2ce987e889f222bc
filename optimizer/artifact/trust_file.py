"""The user's trust file: which directories and installed distributions artifacts may run program code from.

It lives at ``$PROGOPT_CONFIG_DIR/trust.toml`` (default ``$XDG_CONFIG_HOME/progopt/trust.toml``, i.e.
``~/.config/progopt/trust.toml``), is plain TOML the user can read and edit, and is the third way to choose
trusted roots besides ``--trust DIR`` and ``$PROGOPT_TRUST``::

    roots = ["/home/me/proj"]
    packages = ["my-programs"]   # installed distributions whose modules artifacts may name

``progopt compile`` adds the root of the program it compiled (the user typed that reference, so the user
chose it) and says so; nothing else writes it. Like ``ssh`` with its key files, a trust file (or its folder)
that another user owns or can write is ignored, with a note saying why.

>>> remember_root(Path("/home/me/proj"))   # True when the file changed
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from optimizer.outputs import write_atomic
from optimizer.trusted_files import unsafe_reason

CONFIG_DIR_ENV = "PROGOPT_CONFIG_DIR"
FILE_NAME = "trust.toml"
HEADER = ("# progopt's trust file: where compiled artifacts may run program code from.\n"
          "# `progopt compile` adds the root of each program it compiles; edit this file to change what you trust.\n")


def trust_file_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user's trust file is (it may not exist yet)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV]).expanduser() / FILE_NAME
    base = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "progopt" / FILE_NAME


@dataclass(frozen=True)
class TrustFile:
    """What the trust file at ``path`` grants; ``problem`` says why it grants nothing despite existing."""

    path: Path
    roots: tuple[Path, ...] = ()
    packages: tuple[str, ...] = ()
    problem: str | None = None


def _strings(doc: dict[str, object], key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{key!r} must be a list of non-empty strings")
    return value  # type: ignore[return-value]


def read_trust_file(path: Path | None = None) -> TrustFile:
    """The trust file's roots and packages; an absent file grants nothing, an unsafe or malformed one grants
    nothing and says why. Never raises for the file's content."""
    path = path or trust_file_path()
    if not path.exists():
        return TrustFile(path)
    reason = unsafe_reason(path) or unsafe_reason(path.parent)
    if reason:
        return TrustFile(path, problem=f"ignored: {reason}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        roots, packages = _strings(doc, "roots"), _strings(doc, "packages")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        return TrustFile(path, problem=f"ignored: {exc}")
    return TrustFile(path, tuple(Path(r).expanduser() for r in roots), tuple(packages))


def _render(roots: list[str], packages: list[str]) -> str:
    def listing(values: list[str]) -> str:  # a JSON string is a TOML basic string
        return "[\n" + "".join(f"  {json.dumps(v, ensure_ascii=False)},\n" for v in values) + "]" if values else "[]"

    return f"{HEADER}roots = {listing(roots)}\npackages = {listing(packages)}\n"


def remember_root(root: Path, path: Path | None = None) -> bool:
    """Adds ``root`` to the trust file (created private: 0700 folder, 0600 file) unless it or a directory
    above it is already there. Returns whether the file changed. Refuses to edit an unsafe or malformed file
    (raises ``ValueError`` with the reason) rather than overwrite what the user wrote."""
    path = path or trust_file_path()
    current = read_trust_file(path)
    if current.problem:
        raise ValueError(f"{path}: {current.problem}")
    root = root.resolve()
    if any(r.resolve() == root or r.resolve() in root.parents for r in current.roots):
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, _render([*map(str, current.roots), str(root)], list(current.packages)))
    path.chmod(0o600)
    return True
