"""The one secret detector: used by the artifact writer (which refuses), the MLflow tracker, reports and logs
(which mask). A secret is found three ways:

- **by shape**, with the maintained ``detect-secrets`` plugins (provider keys: OpenAI, GitHub, GitLab,
  Stripe, Slack, AWS, JWTs, private keys, ...; their ``analyze_string`` only: nothing is ever verified
  against a provider, so nothing leaves the process), plus high-entropy base64 tokens (in a path, one
  segment at a time: a path of names is no key) and hex keys a few words after a key word ("my openai key
  is 0123..."; never a hash named as one: ``sha256``, ``commit``, ``content_sha256``);
- **by context**: the value after a secret-named key (``api_key=``, ``"token": ``, ``password:``,
  ``apiKeyV2``, ``db_password_old``) or command-line flag (``--password VALUE``, ``--api-key=VALUE``), the
  credentials of an ``Authorization`` header (``Bearer``/``Basic``/``Token`` and the rest of the value), the
  user info of a URL or DSN (``postgresql://user:pass@host``, ``curl -u user:pass``) and credential query
  parameters (``?key=``, ``?code=``, presigned URLs' ``X-Amz-Signature=``, ``X-Goog-Signature=``, ``sig=``);
- **by name**: the value of any environment variable whose name says it is secret (``*KEY*``, ``*TOKEN*``,
  ``*SECRET*``, ``*PASS*``, ``*AUTH*``, ``*CRED*``, ``GITHUBTOKEN``, ``MYCORP_AUTH``).

Whole values are masked, never just their first word. File paths are not: a value that runs on into a path
stops before it, and a path is masked only where it holds a secret itself (a provider key's shape, an
environment value, a random base64 segment, a URL's user info). The hand-written shapes are in
:mod:`optimizer.secret_shapes`.

>>> SecretDetector({}).mask("Authorization: Token abc123def456")
'Authorization: ***'
>>> SecretDetector({}).mask("postgresql://u:pw@db/x, --api-key k3y-v4lue, /tmp/pytest-of-x/test_Refuses0/a.json")
'postgresql://***@db/x, --api-key ***, /tmp/pytest-of-x/test_Refuses0/a.json'
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from optimizer import secret_shapes as shapes

MASK = "***"
MIN_SECRET_LENGTH = 8  # shorter environment values ("1", "true") are left alone
MIN_REPEATED = 6  # a found value this long is masked wherever else it appears too; shorter ones only where found
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|AUTH|CRED|COOKIE|SESSION|PRIVATE|SIGNATURE", re.IGNORECASE)
NOT_SECRET_ENV = re.compile(r"^(TOKENIZERS_PARALLELISM|.*_(PATH|DIR|FILE|HOME|URI_SCHEME|KEYRING_PROVIDER))$", re.I)
Span = tuple[str, int, int]  # (kind, start, end)
_PUNCTUATION = ":/@'\" "  # around a shape's whole match ("://user:pass@"): not part of the secret


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
def _hex_entropy_limit() -> float:
    """detect-secrets' own entropy limit for hex strings (3.0): ``abab...`` or ``0000...`` is no key."""
    from detect_secrets.plugins.high_entropy_strings import HexHighEntropyString

    return HexHighEntropyString().entropy_limit


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
        for kind, start, end in self.spans(text):
            yield kind, text[start:end]

    def spans(self, text: str) -> Iterator[Span]:
        """``(kind, start, end)`` of each secret in ``text`` (they may overlap)."""
        for name, value in self._env.items():
            for match in re.finditer(re.escape(value), text):
                yield f"the value of ${name}", *match.span()
        for plugin in _shape_plugins():
            for regex in plugin.denylist:
                for match in regex.finditer(text):
                    yield (plugin.secret_type, *_secret_span(match))
        paths: list[tuple[int, int]] | None = None
        for kind, start, end in self._context_spans(text):
            paths = shapes.path_spans(text) if paths is None else paths
            for s, e in shapes.clip(start, end, paths, text):
                yield kind, s, e
        for start, end in shapes.hex_key_in_prose(text, _hex_entropy_limit()):
            yield "a hex key after a key word", start, end
        for start, end in shapes.entropy_spans(text):
            yield "a high-entropy token", start, end

    def _context_spans(self, text: str) -> Iterator[Span]:
        """Values found by their context (detect-secrets' keyword patterns and :data:`~.secret_shapes.CONTEXTS`),
        before the paths in them are cut out."""
        for regex, group in _keyword_regexes():
            for match in regex.finditer(text):
                value = match.group(group)
                if value and len(value) >= 4 and MASK not in value:
                    yield "a value under a secret-named key", *match.span(group)
        for kind, pattern in shapes.CONTEXTS:
            for match in pattern.finditer(text):
                start, end = match.span("v")
                if text[start:start + 1] in "\"'" and end - start >= 2 and text[end - 1] == text[start]:
                    start, end = start + 1, end - 1  # a quoted value: what is inside the quotes
                value = text[start:end].strip()
                if not value or MASK in value:
                    continue
                if kind in shapes.NAMED and (not shapes.is_secret_name(match["name"]) or _benign(value)):
                    continue
                yield f"credentials ({kind})", start, end

    def contains(self, text: str) -> bool:
        return next(self.spans(text), None) is not None

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***`` where it was found, and every found value of
        :data:`MIN_REPEATED` characters or more wherever else it appears (repeated until nothing is found)."""
        for _ in range(4):  # masking one secret can expose the context of another
            found = sorted({(s, e) for _, s, e in self.spans(text) if e > s})
            if not found:
                break
            repeated = {text[s:e] for s, e in found if e - s >= MIN_REPEATED}
            merged: list[list[int]] = []
            for s, e in found:
                if merged and s <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([s, e])
            for s, e in reversed(merged):
                text = text[:s] + MASK + text[e:]
            for value in sorted(repeated, key=len, reverse=True):
                text = text.replace(value, MASK)
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


def _secret_span(match: re.Match[str]) -> tuple[int, int]:
    """The secret in a shape match: its longest group when that is key-sized (``aws...'<key>'``), else the
    whole match (``(ghp|gho)_...`` groups only the prefix) less the punctuation around it."""
    groups = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i)]
    longest = max(groups, key=lambda i: len(match.group(i)), default=0)
    if longest and len(match.group(longest)) >= 16:
        return match.span(longest)
    whole = match.group()
    inner = whole.strip(_PUNCTUATION)
    start = match.start() + (whole.index(inner) if inner else 0)
    return (start, start + len(inner)) if inner else match.span()


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (``api_key``, ``token``, ``apiKeyV2``, ``db_password_old``; not
    ``max_tokens``, ``variant_key``, ``key_name``): see :func:`~optimizer.secret_shapes.is_secret_name`."""
    return isinstance(key, str) and shapes.is_secret_name(key)


def value_is_set(value: Any) -> bool:
    return value not in (None, "", [], {})


def _benign(value: str) -> bool:
    """``max_tokens=256``, ``token: none``: a keyed value that is a number or a flag word."""
    return value.isdigit() or value.lower() in shapes.BENIGN_VALUES or value == MASK


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
