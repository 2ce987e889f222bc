"""The one secret detector: used by the artifact writer (which refuses), the MLflow tracker, reports and logs
(which mask). A secret is found three ways:

- **by shape**, with the maintained ``detect-secrets`` plugins (provider keys: OpenAI, GitHub, GitLab,
  Stripe, Slack, AWS, JWTs, private keys, ...; their ``analyze_string`` only: nothing is ever verified
  against a provider, so nothing leaves the process), plus high-entropy base64 tokens;
- **by context**: the value after a secret-named key (``api_key=``, ``"token": ``, ``password:``), the
  credentials of an ``Authorization`` header (``Bearer``/``Basic``/``Token`` and the rest of the value), the
  user info of a URL or DSN (``postgresql://user:pass@host``) and secret-named query parameters (``?key=``);
- **by name**: the value of any environment variable whose name says it is secret (``*KEY*``, ``*TOKEN*``,
  ``*SECRET*``, ``*PASS*``, ``*AUTH*``, ``*CRED*``, ``GITHUBTOKEN``, ``MYCORP_AUTH``).

Whole values are masked, never just their first word.

>>> SecretDetector().mask("Authorization: Token abc123def456 and postgresql://u:pw@db/x")
'Authorization: *** and postgresql://***@db/x'
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter environment values ("1", "true") are left alone
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|AUTH|CRED|COOKIE|SESSION|PRIVATE|SIGNATURE", re.IGNORECASE)
NOT_SECRET_ENV = re.compile(r"^(TOKENIZERS_PARALLELISM|.*_(PATH|DIR|FILE|HOME|URI_SCHEME|KEYRING_PROVIDER))$", re.I)
SECRET_NAME = (r"(?:api[_-]?key|apikey|secret[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|secret|"
               r"password|passwd|pwd|pass|token|access[_-]?token|auth|authorization|credentials?|sig|"
               r"session|cookie|key)")  # not "signature": DSPy signatures are everywhere in our JSON
SECRET_KEY_NAME = re.compile(r"(^|[_\-.])" + SECRET_NAME + r"$|^" + SECRET_NAME + "$", re.IGNORECASE)
NOT_SECRET_KEY_NAME = re.compile(r"^(max_tokens|tokens?_(in|out)|.*_tokens|key_name|variant_key|sort_key)$",
                                 re.IGNORECASE)
_CONTEXT = (
    # Authorization header values: the scheme and everything up to the end of the value.
    r"(?i:(?<![\w-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?P<header>[^\"'\n,;}]+)",
    r"(?i:\bbearer\s+)(?P<scheme>[A-Za-z0-9._~+/\-]{12,}=*)",  # outside a header: "basic"/"token" are English
    # URL and DSN user info: scheme://user:pass@host, scheme://token@host.
    r"(?P<userinfo>(?<=://)[^/\s:@\"']*(?::[^/\s@\"']*)?(?=@))",
    # DSN key/value form: password=... in "host=db password=pw".
    r"(?i:\b(?:password|passwd|pwd)\s*=\s*)(?P<dsn>[^\s\"',;&]+)",
    # Secret-named query parameters and key=value / "key": "value" pairs.
    r"(?i:(?P<key>(?<![A-Za-z0-9])[\"']?(?:[\w\-.]*[_\-.])?" + SECRET_NAME + r"[\"']?)\s*[:=]\s*[\"']?)"
    r"(?P<keyed>[^\s\"',;&}\]{\[][^\s\"',;&}\]]*)",
)
_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{24,}={0,2}(?![A-Za-z0-9+/=_\-])")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
B64_ENTROPY = 4.0
B64_ENTROPY_NO_DIGIT = 4.2  # a long token without digits must look random (a random base64 key of 32+ chars)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _high_entropy(token: str) -> bool:
    """A long mixed-case token with high entropy (a base64 key), not a hex hash or id: with a digit, entropy of
    at least :data:`B64_ENTROPY`; without one (about 1 random 30-byte key in 800), 32+ characters, at least
    :data:`B64_ENTROPY_NO_DIGIT` and random case (a quarter to three quarters of its letters upper case, where
    CamelCase identifiers have few)."""
    core = token.rstrip("=")
    if _HEX.match(core) or not any(c.isupper() for c in core) or not any(c.islower() for c in core):
        return False
    if any(c.isdigit() for c in core):
        return _entropy(core) >= B64_ENTROPY
    letters = [c for c in core if c.isalpha()]
    upper = sum(c.isupper() for c in letters) / len(letters)
    return len(core) >= 32 and 0.25 <= upper <= 0.75 and _entropy(core) >= B64_ENTROPY_NO_DIGIT


@cache
def _shape_plugins() -> tuple[Any, ...]:
    """detect-secrets' regex plugins (every provider-key shape it maintains), built once: they are stateless.
    Only their ``denylist`` patterns are used, never ``analyze_line``/``verify`` (which may call providers)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.ip_public import IPPublicDetector

    classes = get_mapping_from_secret_type_to_class().values()  # the built-in plugins (no custom ones configured)
    return tuple(cls() for cls in sorted(classes, key=lambda c: c.__name__)
                 if issubclass(cls, RegexBasedDetector) and cls is not IPPublicDetector)


@cache
def _keyword_regexes() -> tuple[tuple[re.Pattern[str], int], ...]:
    from detect_secrets.plugins import keyword

    return tuple({**keyword.CONFIG_DENYLIST_REGEX_TO_GROUP, **keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP}.items())


@cache
def _context() -> tuple[re.Pattern[str], ...]:
    """One pattern per context, each searched on its own (an alternation would let a shorter, earlier match
    of one hide a longer match of another: ``'Authorization: Token X`` keyed on its quote)."""
    return tuple(re.compile(pattern) for pattern in _CONTEXT)


def secret_env_values(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables whose name says they hold a secret, with values long enough to matter."""
    return {k: v for k, v in environ.items() if SECRET_ENV_NAME.search(k) and not NOT_SECRET_ENV.match(k)
            and len(v) >= MIN_SECRET_LENGTH and not v.startswith(("/", "~", "."))}


class SecretDetector:
    """Finds and masks secrets. Environment values are read once, when built: build one per compile, command
    or report, so a key set later in the process is seen. Stateless otherwise; thread-safe."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        values = secret_env_values(os.environ if environ is None else environ)
        self._env = dict(sorted(values.items(), key=lambda kv: len(kv[1]), reverse=True))  # longest first

    def find(self, text: str) -> Iterator[tuple[str, str]]:
        """``(kind, secret)`` for each secret in ``text``; ``kind`` names an env variable or a detector."""
        for name, value in self._env.items():
            if value in text:
                yield f"the value of ${name}", value
        for plugin in _shape_plugins():
            for regex in plugin.denylist:
                for match in regex.finditer(text):
                    yield plugin.secret_type, _secret_part(match)
        for regex, group in _keyword_regexes():
            for match in regex.finditer(text):
                value = match.group(group)
                if value and len(value) >= 4 and MASK not in value:
                    yield "a value under a secret-named key", value
        for pattern in _context():
            for match in pattern.finditer(text):
                kind, value = next((k, v) for k, v in match.groupdict().items() if v is not None and k != "key")
                if value.strip() and MASK not in value and not (kind == "keyed" and _benign_key(match["key"], value)):
                    yield f"credentials ({kind})", value.strip()
        for match in _B64_TOKEN.finditer(text):
            if _high_entropy(match.group()):
                yield "a high-entropy token", match.group()

    def contains(self, text: str) -> bool:
        return next(self.find(text), None) is not None

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***`` (repeated until nothing more is found)."""
        for _ in range(4):  # masking one secret can expose the context of another
            found = sorted({secret for _, secret in self.find(text)}, key=len, reverse=True)
            if not found:
                break
            for secret in found:
                text = text.replace(secret, MASK)
        return text

    def mask_value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked; values under secret-named keys are masked whole."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {self.mask(str(k)): MASK if is_secret_key(k) and value_is_set(v) else self.mask_value(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value


def _secret_part(match: re.Match[str]) -> str:
    """The secret in a shape match: its longest group when that is key-sized (``aws...'<key>'``), else the
    whole match (``(ghp|gho)_...`` groups only the prefix)."""
    longest = max((g for g in match.groups() if g), key=len, default="")
    return longest if len(longest) >= 16 else match.group(0)


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (``api_key``, ``token``, ``password``; not ``max_tokens``)."""
    return isinstance(key, str) and bool(SECRET_KEY_NAME.search(key)) and not NOT_SECRET_KEY_NAME.match(key)


def value_is_set(value: Any) -> bool:
    return value not in (None, "", [], {})


def _benign_key(key: str | None, value: str) -> bool:
    """``max_tokens=256``, ``key: steps.x``: a keyed value that is a number, a flag or names a non-secret key."""
    name = (key or "").strip("\"'")
    return (NOT_SECRET_KEY_NAME.match(name) is not None or value.isdigit()
            or value.lower() in {"none", "null", "true", "false", "bearer", "basic", "token", "digest", MASK})


class MaskingFilter(logging.Filter):
    """A logging filter (put it on a handler) that masks secrets in every record's formatted message."""

    def __init__(self, detector: SecretDetector | None = None):
        super().__init__()
        self.detector = detector or SecretDetector()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.detector.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.detector.mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
