"""What an artifact may make happen: the one place that decides which code, endpoints and model files a
loaded artifact may use. An artifact is data; the **user's** configuration decides, never the artifact.

- **Code**: the program reference is imported only from a trusted root (the working directory's project,
  plus ``--trust DIR`` / ``PROGOPT_TRUST``) or an installed distribution, and only if the file's bytes still
  hash to the artifact's ``source_sha256`` (see :func:`optimizer.refs.resolve_trusted`).
- **Endpoints**: an ``api_base`` receives the user's provider key, so it is used only if allowed: loopback
  by default; ``PROGOPT_ALLOWED_ENDPOINTS`` (comma-separated URL prefixes, or ``loopback``) replaces that
  default, ``--allow-endpoint URL`` adds to it.
- **Model files**: a ``gguf`` that is not an embedded model key must be a ``.gguf`` file inside a
  directory the user allowed (``--allow-model-dir DIR`` / ``PROGOPT_MODEL_DIRS``); none by default.

>>> policy = TrustPolicy.from_env(trust=["/srv/programs"], endpoints=["https://api.openai.com/v1"])
>>> specs = checked_models(doc, "sentiment.json", policy)
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from optimizer import refs
from optimizer.artifact.errors import ArtifactTrustError
from optimizer.artifact.schema import json_path
from optimizer.models.files import EMBEDDED

TRUST_ENV = "PROGOPT_TRUST"
ENDPOINTS_ENV = "PROGOPT_ALLOWED_ENDPOINTS"
MODEL_DIRS_ENV = "PROGOPT_MODEL_DIRS"
LOOPBACK = "loopback"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether ``url`` is on the allow-list: ``loopback``, or a prefix with the same scheme, host and port
    whose path is a leading segment of ``url``'s path."""
    target = urlsplit(url)
    for entry in allowed:
        if entry == LOOPBACK:
            if target.scheme in ("http", "https") and _is_loopback(target.hostname or ""):
                return True
            continue
        rule = urlsplit(entry)
        path, prefix = target.path.rstrip("/") + "/", rule.path.rstrip("/") + "/"
        if (rule.scheme, rule.hostname, rule.port) == (target.scheme, target.hostname, target.port) and \
                path.startswith(prefix):
            return True
    return False


def _paths(value: str | None) -> list[Path]:
    return [Path(p).expanduser() for p in (value or "").split(os.pathsep) if p]


@dataclass(frozen=True)
class TrustPolicy:
    """The user's answer to "what may an artifact use?". Build it with :meth:`from_env`; immutable."""

    roots: tuple[Path, ...] = ()
    endpoints: tuple[str, ...] = (LOOPBACK,)
    model_dirs: tuple[Path, ...] = ()
    allow_source_drift: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, *, trust: Iterable[str | Path] = (), endpoints: Iterable[str] = (),
                 model_dirs: Iterable[str | Path] = (), allow_source_drift: bool = False,
                 environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> TrustPolicy:
        """The working directory's project (if it is in one) plus ``trust`` and ``$PROGOPT_TRUST`` as roots;
        loopback (or ``$PROGOPT_ALLOWED_ENDPOINTS``) plus ``endpoints``; ``model_dirs`` plus
        ``$PROGOPT_MODEL_DIRS``."""
        env = os.environ if environ is None else environ
        project = refs.project_root((cwd or Path.cwd()).resolve())
        roots = [*([project] if project else []), *_paths(env.get(TRUST_ENV)), *map(Path, trust)]
        base = [e.strip() for e in env[ENDPOINTS_ENV].split(",") if e.strip()] if ENDPOINTS_ENV in env \
            else [LOOPBACK]
        return cls(roots=tuple(dict.fromkeys(r.resolve() for r in roots)),
                   endpoints=tuple(dict.fromkeys([*base, *endpoints])),
                   model_dirs=tuple(dict.fromkeys(Path(d).expanduser().resolve()
                                                  for d in [*_paths(env.get(MODEL_DIRS_ENV)), *model_dirs])),
                   allow_source_drift=allow_source_drift)

    def endpoint_allowed(self, url: str) -> bool:
        return _endpoint_allowed(url, self.endpoints)

    def model_file(self, gguf: str) -> Path | None:
        """The allowed ``.gguf`` file ``gguf`` names (resolved, symlinks followed), or None."""
        path = Path(gguf)
        if not path.is_absolute() or path.suffix != ".gguf":
            return None
        resolved = path.resolve()
        if resolved.is_file() and any(d == resolved.parent or d in resolved.parents for d in self.model_dirs):
            return resolved
        return None


def checked_models(doc: dict[str, Any], path: Path | str, policy: TrustPolicy) -> dict[str, dict[str, Any]]:
    """Each step's model config (a :class:`ModelSpec` as a dict), after refusing any endpoint or model file
    ``policy`` does not allow.
    A model file's path is replaced by its resolved form, so the file checked is the file loaded.
    Reads nothing but the file system's metadata; sends nothing."""
    specs = {}
    for name, step in doc["steps"].items():
        model, at = dict(step["model"]), ("steps", name, "model")
        base = model.get("api_base")
        if base and not policy.endpoint_allowed(base):
            raise ArtifactTrustError(path, json_path((*at, "api_base")), f"the endpoint {base} is not allowed by "
                                     f"your configuration (allowed: {', '.join(policy.endpoints) or 'none'}); "
                                     "it would receive your provider key. Allow it with --allow-endpoint URL or "
                                     f"{ENDPOINTS_ENV}")
        gguf = model.get("gguf")
        if model["provider"] == "local" and gguf not in EMBEDDED:
            allowed = policy.model_file(gguf or "")
            if allowed is None:
                dirs = ", ".join(map(str, policy.model_dirs)) or "none"
                raise ArtifactTrustError(path, json_path((*at, "gguf")), f"the model file {gguf!r} is not an "
                                         f"embedded model ({', '.join(EMBEDDED)}) nor an absolute .gguf path inside "
                                         f"an allowed directory ({dirs}); allow one with --allow-model-dir DIR "
                                         f"or {MODEL_DIRS_ENV}")
            model["gguf"] = str(allowed)
        specs[name] = model
    return specs


def uses(doc: dict[str, Any], policy: TrustPolicy) -> list[str]:
    """What loading ``doc`` would use, one line each: the program file, every endpoint and model file,
    and whether ``policy`` allows it. Runs no code."""
    ref = doc["program"]["ref"]
    try:
        where = f"{refs.locate(ref, policy.roots).path} (trusted)"
    except refs.ProgramReferenceError as exc:
        where = f"REFUSED: {exc}"
    lines = [f"code     {ref} -> {where}"]
    for name, step in doc["steps"].items():
        model = step["model"]
        if model.get("api_base"):
            verdict = "allowed" if policy.endpoint_allowed(model["api_base"]) else "REFUSED"
            lines.append(f"endpoint {name}: {model['api_base']} ({verdict})")
        elif model["provider"] == "litellm":
            lines.append(f"endpoint {name}: the provider's default for {model['name']} (LiteLLM)")
        if model["provider"] == "local":
            gguf = model.get("gguf")
            file = f"embedded {gguf}" if gguf in EMBEDDED else (
                f"{policy.model_file(gguf or '')} (allowed)" if policy.model_file(gguf or "") else f"{gguf} (REFUSED)")
            lines.append(f"file     {name}: {file}")
    return lines
