"""Keep secrets out of MLflow: every param, tag and artifact text passes through a :class:`Scrubber`.

A secret is the value of an environment variable whose name says it is one (``*KEY*``, ``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``, ``*CREDENTIAL*``), a string shaped like a well-known API key (``sk-...``,
``ghp_...``, ``hf_...``, ``AKIA...``, a bearer token), or the value under a secret-named key
(``api_key=...``, ``"token": "..."``).

>>> Scrubber().text("calling with api_key=sk-abc123abc123abc123abc123")
'calling with api_key=***'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
# Shorter environment values are left alone: masking every "1" or "true" would garble the records.
MIN_SECRET_LENGTH = 8
# Names that hold a secret when they end a key: `api_key`, `access_token`, `client_secret` (not `max_tokens`).
SECRET_NAME = r"(?:api[_-]?key|secret[_-]?key|access[_-]?key|private[_-]?key|secret|password|passwd|token|" \
              r"authorization|credentials?)"
SECRET_KEY_NAME = re.compile(SECRET_NAME + "$", re.IGNORECASE)
SECRET_SHAPES = (
    r"\bsk-[A-Za-z0-9_\-]{16,}",  # OpenAI, Anthropic (sk-ant-...), many OpenAI-compatible services
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
    r"\bhf_[A-Za-z0-9]{20,}",  # Hugging Face
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bAIza[0-9A-Za-z_\-]{30,}",  # Google
    r"\bxox[abpr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"\b(?i:bearer)\s+[A-Za-z0-9._~+/\-]{12,}=*",
)
# `api_key=v`, `"token": "v"`, `password: v` in free text (logs, error messages, configs).
KEY_VALUE = re.compile(r"""(?P<key>["']?[\w\-.]*""" + SECRET_NAME + r"""["']?\s*[:=]\s*)(?P<quote>["']?)"""
                       r"""(?P<value>[^\s"',;&}]+)""", re.IGNORECASE)


class Scrubber:
    """Masks secrets in text and in nested JSON-like values. Environment values are read once, when built
    (build one per compile so a key set later in the process is seen)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        values = {v for k, v in env.items() if SECRET_ENV_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is masked whole.
        self._values = sorted(values, key=len, reverse=True)
        self._shapes = re.compile("|".join(SECRET_SHAPES))

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for value in self._values:
            text = text.replace(value, MASK)
        text = self._shapes.sub(MASK, text)
        return KEY_VALUE.sub(lambda m: m["key"] + m["quote"] + (m["value"] if m["value"] == MASK else MASK), text)

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked; values under secret-named keys are masked whole."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): MASK if isinstance(k, str) and SECRET_KEY_NAME.search(k) and v
                    else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def contains_secret(self, text: str) -> bool:
        """Whether ``text`` holds anything :meth:`text` would mask."""
        return self.text(text) != text
