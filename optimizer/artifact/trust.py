"""What an artifact may make happen: the one place that decides which code, endpoints and model files a
loaded artifact may use. An artifact is data; the **user's** configuration decides, never the artifact, and
nothing is discovered on the user's behalf (no project found by walking up from the working directory).

- **Code**: the program reference runs only from a root the user chose (``--trust DIR``, ``$PROGOPT_TRUST``,
  or the trust file that ``progopt compile`` writes, :mod:`optimizer.artifact.trust_file`) or from an
  installed distribution the user named (``--trust-package NAME``, ``$PROGOPT_TRUST_PACKAGES``, the trust
  file's ``packages``); the file is checked (exact, unshadowed, owned and writable by the user alone) and its
  bytes hashed against the artifact's ``source_sha256`` before they run (:func:`optimizer.refs.resolve_trusted`).
- **Endpoints**: an ``api_base`` receives the user's provider key, so it is used only if allowed, compared as
  a parsed, normalised URL (:mod:`optimizer.artifact.endpoints`): loopback by default;
  ``PROGOPT_ALLOWED_ENDPOINTS`` (comma-separated URL prefixes, or ``loopback``) replaces that default,
  ``--allow-endpoint URL`` adds to it.
- **Model files**: a ``gguf`` that is not an embedded model key must be a ``.gguf`` file inside a
  directory the user allowed (``--allow-model-dir DIR`` / ``PROGOPT_MODEL_DIRS``); none by default.

>>> policy = TrustPolicy.from_env(trust=["/srv/programs"], endpoints=["https://api.openai.com/v1"])
>>> specs = checked_models(doc, "sentiment.json", policy)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizer import refs
from optimizer.artifact.endpoints import EndpointError, parse_endpoint
from optimizer.artifact.errors import ArtifactTrustError
from optimizer.artifact.schema import json_path, model_sites
from optimizer.artifact.trust_file import read_trust_file, trust_file_path
from optimizer.models.files import EMBEDDED

TRUST_ENV = "PROGOPT_TRUST"
TRUST_PACKAGES_ENV = "PROGOPT_TRUST_PACKAGES"
ENDPOINTS_ENV = "PROGOPT_ALLOWED_ENDPOINTS"
MODEL_DIRS_ENV = "PROGOPT_MODEL_DIRS"
LOOPBACK = "loopback"
_URL_IN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|//")  # a URL inside a LiteLLM model string


def _endpoint_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether ``url`` is on the allow-list: ``loopback``, or an entry with the same scheme, host and port whose
    path segments lead ``url``'s (both parsed and normalised). Raises :class:`EndpointError` for a malformed
    ``url``; a malformed entry allows nothing."""
    target = parse_endpoint(url)
    for entry in allowed:
        if entry == LOOPBACK:
            if target.loopback:
                return True
            continue
        try:
            if target.within(parse_endpoint(entry)):
                return True
        except EndpointError:
            continue
    return False


def _paths(value: str | None) -> list[Path]:
    return [Path(p).expanduser() for p in (value or "").split(os.pathsep) if p]


def _names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


@dataclass(frozen=True)
class TrustPolicy:
    """The user's answer to "what may an artifact use?". Build it with :meth:`from_env`; immutable.
    ``notes`` say what the user's configuration did not grant and why (an unsafe trust file)."""

    roots: tuple[Path, ...] = ()
    endpoints: tuple[str, ...] = (LOOPBACK,)
    model_dirs: tuple[Path, ...] = ()
    allow_source_drift: bool = False
    packages: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_env(cls, *, trust: Iterable[str | Path] = (), endpoints: Iterable[str] = (),
                 model_dirs: Iterable[str | Path] = (), allow_source_drift: bool = False,
                 packages: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> TrustPolicy:
        """Roots: ``trust``, ``$PROGOPT_TRUST`` and the trust file's; packages: ``packages``,
        ``$PROGOPT_TRUST_PACKAGES`` and the trust file's; loopback (or ``$PROGOPT_ALLOWED_ENDPOINTS``) plus
        ``endpoints``; ``model_dirs`` plus ``$PROGOPT_MODEL_DIRS``. Raises :class:`EndpointError` for an
        allow-list entry that is not a URL (the user's own mistake, said at once)."""
        env = os.environ if environ is None else environ
        saved = read_trust_file(trust_file_path(env))
        roots = [*map(Path, trust), *_paths(env.get(TRUST_ENV)), *saved.roots]
        base = [e.strip() for e in env[ENDPOINTS_ENV].split(",") if e.strip()] if ENDPOINTS_ENV in env \
            else [LOOPBACK]
        allowed = tuple(dict.fromkeys([*base, *endpoints]))
        for entry in allowed:
            if entry != LOOPBACK:
                parse_endpoint(entry)
        return cls(roots=tuple(dict.fromkeys(r.expanduser().resolve() for r in roots)), endpoints=allowed,
                   model_dirs=tuple(dict.fromkeys(Path(d).expanduser().resolve()
                                                  for d in [*_paths(env.get(MODEL_DIRS_ENV)), *model_dirs])),
                   allow_source_drift=allow_source_drift,
                   packages=tuple(dict.fromkeys([*packages, *_names(env.get(TRUST_PACKAGES_ENV)), *saved.packages])),
                   notes=(f"trust file {saved.path}: {saved.problem}",) if saved.problem else ())

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


def _check_endpoint(base: str, policy: TrustPolicy, path: Path | str, at: tuple[str, ...],
                    field: str = "api_base") -> None:
    where = json_path((*at, field))
    try:
        allowed = policy.endpoint_allowed(base)
    except EndpointError as exc:
        raise ArtifactTrustError(path, where, f"malformed endpoint: {exc}") from None
    if not allowed:
        raise ArtifactTrustError(path, where, f"the endpoint {base} is not allowed by your configuration "
                                 f"(allowed: {', '.join(policy.endpoints) or 'none'}); it would receive your "
                                 f"provider key. Allow it with --allow-endpoint URL or {ENDPOINTS_ENV}")


def checked_models(doc: dict[str, Any], path: Path | str, policy: TrustPolicy) -> dict[str, dict[str, Any]]:
    """Each step's (and ensemble member's, :func:`model_sites`) model config (a :class:`ModelSpec` as a dict),
    after refusing any endpoint or model file
    ``policy`` does not allow.
    A model file's path is replaced by its resolved form, so the file checked is the file loaded.
    Reads nothing but the file system's metadata; sends nothing."""
    specs = {}
    for name, at, found in model_sites(doc):
        model = dict(found)
        if model.get("api_base") is not None:
            _check_endpoint(model["api_base"], policy, path, at)
        embedded = _URL_IN_NAME.search(model["name"]) if model["provider"] == "litellm" else None
        if embedded:  # LiteLLM takes some providers' endpoint from the model name (huggingface/https://...)
            _check_endpoint(model["name"][embedded.start():], policy, path, at, field="name")
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
        where = f"{refs.locate(ref, policy.roots, policy.packages).path} (trusted)"
    except refs.ProgramReferenceError as exc:
        where = f"REFUSED: {exc}"
    lines = [f"code     {ref} -> {where}"]
    for name, _, model in model_sites(doc):
        if model.get("api_base"):
            try:
                verdict = "allowed" if policy.endpoint_allowed(model["api_base"]) else "REFUSED"
            except EndpointError as exc:
                verdict = f"REFUSED: {exc}"
            lines.append(f"endpoint {name}: {model['api_base']} ({verdict})")
        elif model["provider"] == "litellm" and _URL_IN_NAME.search(model["name"]):
            lines.append(f"endpoint {name}: {model['name']} (a URL in the model name: checked like api_base)")
        elif model["provider"] == "litellm":
            lines.append(f"endpoint {name}: the provider's default for {model['name']} (LiteLLM)")
        if model["provider"] == "local":
            gguf = model.get("gguf")
            file = f"embedded {gguf}" if gguf in EMBEDDED else (
                f"{policy.model_file(gguf or '')} (allowed)" if policy.model_file(gguf or "") else f"{gguf} (REFUSED)")
            lines.append(f"file     {name}: {file}")
    return lines
