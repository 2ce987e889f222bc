"""The hand-written shapes of :mod:`optimizer.secrets`: what ``detect-secrets`` does not know.

- **key names** (:func:`is_secret_name`): a name is split into words (``apiKeyV2`` -> api, key, v2;
  ``db_password_old`` -> db, password, old) and read from its last word once version/variant suffixes are
  dropped: ``*password``, ``*token``, ``*secret``, ``*key`` (not ``variant_key``, ``sort_key``, ``key_name``,
  ``max_tokens``, ``eos_token``);
- **contexts** (:data:`CONTEXTS`): the value after a secret-named key (``api_key_v2=``, ``"secretKey": ``) or
  command-line flag (``--password VALUE``, ``--api-key=VALUE``), ``Authorization`` headers, URL user info,
  DSN passwords, credential query parameters (``?code=``, ``X-Amz-Signature=``, ``sig=``), ``curl -u``;
- **hex keys in prose** (:func:`hex_key_in_prose`): 24+ hex digits a few words after a key word ("my openai
  key is 0123..."), unless a hash word names them (``sha256``, ``commit``, ``digest``, ``content_sha256``);
- **paths** (:func:`path_spans`, :func:`entropy_spans`): a path is names joined by ``/``; it is judged one
  segment (or one run of mixed-case segments) at a time, and a segment made of words is a name, not a key.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

SECRET_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "passcode", "secret", "token",
                          "apikey", "auth", "authorization", "credential", "credentials", "creds", "cookie",
                          "session", "sig"})
SUFFIX_WORDS = re.compile(r"^(v?\d+|old|new|prev|previous|current|cur|backup|bak|orig|primary|secondary|alt|tmp|"
                          r"temp|prod|production|dev|staging|test|live|pem|der|b64|base64|hex|raw|enc|encoded|"
                          r"encrypted|value|val|str|string|plain|plaintext|env|override)$")
NOT_SECRET_KEY = frozenset({"variant", "sort", "cache", "primary", "foreign", "partition", "public", "group",
                            "join", "lookup", "index", "dedup", "idempotency", "hash", "row", "dict", "map",
                            "field", "unique", "composite", "range", "shard", "routing", "translation"})
NOT_SECRET_TOKEN = frozenset({"bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "stop", "start",
                              "end", "next", "page", "continuation", "cancel", "cancellation"})
SECRET_SIGNATURE = frozenset({"amz", "goog", "hmac", "request", "sas", "webhook", "url"})
_WORD = re.compile(r"[A-Z]+\d*(?![a-z])|[A-Z]?[a-z]+\d*|\d+")


def key_words(name: str) -> list[str]:
    """``apiKeyV2`` -> ``['api', 'key', 'v2']``; ``X-Amz-Signature`` -> ``['x', 'amz', 'signature']``."""
    return [w.lower() for w in _WORD.findall(name)]


def is_secret_name(name: str) -> bool:
    """Whether a key, flag or parameter name names a secret: its last word (after ``_v2``, ``_old``, ``_pem``
    and the like) is a secret word, ``key`` (not ``variant_key``) or an HMAC ``signature`` (``X-Amz-``)."""
    words = key_words(name)
    while len(words) > 1 and SUFFIX_WORDS.match(words[-1]):
        words.pop()
    if not words:
        return False
    head, before = words[-1], (words[-2] if len(words) > 1 else "")
    if head == "key":
        return before not in NOT_SECRET_KEY
    if head == "token":
        return before not in NOT_SECRET_TOKEN
    if head == "signature":
        return before in SECRET_SIGNATURE
    return head in SECRET_WORDS


_VALUE = r"(?P<v>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&}\]{\[][^\s\"',;&}\]]*)"
CONTEXTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern)) for kind, pattern in (
    # Authorization header values: the scheme and everything up to the end of the value.
    ("header", r"(?i:(?<![\w-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?P<v>[^\"'\n,;}]+)"),
    ("bearer", r"(?i:\bbearer\s+)(?P<v>[A-Za-z0-9._~+/\-]{12,}=*)"),  # outside a header: "basic" is English
    # URL and DSN user info: scheme://user:pass@host, scheme://token@host.
    ("userinfo", r"(?P<v>(?<=://)[^/\s:@\"']*(?::[^/\s@\"']*)?(?=@))"),
    # DSN key/value form: password=... in "host=db password=pw".
    ("dsn", r"(?i:\b(?:password|passwd|pwd)\s*=\s*)(?P<v>[^\s\"',;&]+)"),
    # name=value, "name": "value", export NAME=value, --name=value: the name is checked by is_secret_name.
    ("keyed", r"(?<![\w\-.])[\"']?(?P<name>-{0,2}[A-Za-z_$][\w\-.]*)[\"']?\s*[:=]\s*(?=" + _VALUE + ")"),
    # --password VALUE, -token "VALUE" (the next word; never another flag).
    ("flag", r"(?<![\w-])-{1,2}(?P<name>[A-Za-z][\w-]*)[ \t]+(?=(?P<v>\"[^\"\n]*\"|'[^'\n]*'|(?!-)[^\s\"']+))"),
    # Credential query parameters whose names say nothing (OAuth codes, presigned URL signatures).
    ("query", r"(?i:[?&#;](?:code|[\w.\-]*signature|client_assertion|assertion|otp)=)(?P<v>[^&#\s\"'<>]+)"),
    # curl -u user:password, --user=user:password.
    ("userpass", r"(?<![\w-])(?:-u|--user)(?:[ \t]+|=)[\"']?[^\s:\"'@/]+:(?P<v>[^\s\"'@]+)"),
))
NAMED = frozenset({"keyed", "flag"})  # contexts whose name must pass is_secret_name
BENIGN_VALUES = frozenset({"none", "null", "true", "false", "bearer", "basic", "token", "digest"})

HASH_WORDS = re.compile(r"sha\d*|md5|hash|digest|checksum|commit|fingerprint|etag|uuid|crc\d*|blake|^id$", re.I)
_PROSE_HEX = re.compile(
    r"(?i)(?<![\w-])(?P<kw>(?:api|access|secret|private)[\s_-]?key|apikey|key|token|secret|password|passwd|"
    r"passphrase|credentials?|auth|bearer)(?![\w-])"
    r"(?P<gap>(?:[^\w\n]{1,4}[\w.\-]{1,24}){0,4}?)[^\w\n]{1,4}(?P<v>[0-9a-f]{24,})(?![\w-])")
_WORDS = re.compile(r"[\w.\-]+")


def hex_key_in_prose(text: str, entropy_limit: float) -> Iterator[tuple[int, int]]:
    """Spans of hex keys a few words after a key word ("my openai key is 0123...", "token 9f..."), not hashes:
    no hash word among the three words before the key word and those between ("content_sha256 e8c9...",
    "the sha256 of the key is ...", "commit 0744c1d..."), not ``cache key <hex>``; with a digit, and more
    entropy than ``entropy_limit`` (``000...``, ``abab...`` are no keys)."""
    for match in _PROSE_HEX.finditer(text):
        value = match["v"]
        before = _WORDS.findall(text[max(0, match.start() - 64):match.start()])[-3:]
        if any(HASH_WORDS.search(w) for w in [*before, *_WORDS.findall(match["gap"])]):
            continue
        previous = key_words(before[-1])[-1:] if before else []
        if key_words(match["kw"]) == ["key"] and previous and previous[0] in NOT_SECRET_KEY:
            continue
        if any(c.isdigit() for c in value) and not value.isdigit() and _entropy(value) > entropy_limit:
            yield match.span("v")


# -- paths ----------------------------------------------------------------------------------------------
_PATH = re.compile(r"(?<![\w.~/\-+=%@:])(?:~|\.\.?)?/?(?:[\w.\-]+/)+[\w.\-]*(?![\w.\-/+=%@])")
_EXTENSION = re.compile(r"[^/]\.[A-Za-z][A-Za-z0-9]{0,7}$")
_EXTENSION_AFTER = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}(?![\w-])")
_REF = re.compile(r":(?:[A-Za-z_][\w.]*|\d+(?::\d+)?)(?![\w.])")  # programs/x.py:Program, x.py:12:3


def path_spans(text: str) -> list[tuple[int, int]]:
    """Spans of path-shaped text: ``/abs/a.json``, ``rel/dir/a.json``, ``./x``, ``~/x`` (not URLs), with the
    ``:Program`` or ``:line`` after a file's name."""
    spans = []
    for match in _PATH.finditer(text):
        if match.group().startswith(("/", "./", "../", "~/")) or _EXTENSION.search(match.group()):
            ref = _REF.match(text, match.end())
            spans.append((match.start(), ref.end() if ref else match.end()))
    return spans


def clip(start: int, end: int, paths: list[tuple[int, int]], text: str) -> Iterator[tuple[int, int]]:
    """``[start, end)`` less the paths in it, each piece trimmed of blanks and quotes: a value that runs on into
    a path (``password: pw at /tmp/a.json``) is masked up to the path, never over it."""
    cut = sorted((max(s, start), min(e, end)) for s, e in paths if s < end and e > start)
    for s, e in zip([start] + [e for _, e in cut], [s for s, _ in cut] + [end], strict=True):
        piece = text[s:e]
        stripped = piece.strip(" \t\"',;:")
        if any(c.isalnum() for c in stripped):
            offset = s + piece.index(stripped)
            yield offset, offset + len(stripped)


# -- high entropy ---------------------------------------------------------------------------------------
_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/_\-]{24,}={0,2}(?![A-Za-z0-9+/=_\-])")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_CHUNK = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
# "Ab" then no lower case, not a two-letter word: keys have several, CamelCase names none ("RuleToRequest").
_CAMEL_BREAK = re.compile(r"(?!(?:To|Of|In|On|By|Is|As|At|Or|Up|If|Id|Io|Db|Ok|No|Do|Go|My|We|It|Be|An|Ui|Fn|Op)"
                          r"(?![a-z]))[A-Z][a-z](?![a-z])")
_SEPARATORS = re.compile(r"[-_./]+")
_DIGIT_ISLAND = re.compile(r"(?<=[A-Za-z])\d+(?=[A-Za-z])")  # "zaav5Oeg6R6Iux": keys scatter digits, names less
_PLAIN = re.compile(r"[a-z][a-z0-9_.\-]{2,}")
B64_ENTROPY = 4.0
B64_ENTROPY_NO_DIGIT = 4.2  # a long token without digits must look random (a random base64 key of 32+ chars)
MIN_B64 = 24


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def high_entropy(token: str) -> bool:
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


def name_like(text: str) -> bool:
    """Made of words, as file and directory names are (``models--HuggingFaceTB--SmolLM2-135M-Instruct``,
    ``CompiledProgramWithCalibratedScores``): its letters run in chunks of 3+ on average, a quarter of them
    vowels, 80% of them in words (3+ letters with a vowel, or a short acronym), few digits between letters,
    every part of 12+ characters between separators in CamelCase (no ``Ab`` chunk), and no ``+``. Measured: a
    random key reads so about once in 10,000 or less; a high-entropy file name of 24+ characters mostly does
    (of this machine's file paths, 1 in 2,000 still has a segment masked; 1 in 20 did whole)."""
    chunks = _CHUNK.findall(text)
    letters = "".join(chunks)
    if "+" in text or not chunks:
        return not chunks
    vowels = sum(c in "aeiouAEIOU" for c in letters) / len(letters)
    in_words = sum(len(c) for c in chunks if (len(c) >= 3 and _VOWEL.search(c)) or (c.isupper() and len(c) <= 5))
    return (len(letters) / len(chunks) >= 3.0 and vowels >= 0.25 and in_words / len(letters) >= 0.8
            and len(_DIGIT_ISLAND.findall(text)) <= 1 + len(text) // 24
            and all(len(part) < 12 or not _CAMEL_BREAK.search(part) for part in _SEPARATORS.split(text)))


def _member(segment: str) -> bool:
    """A segment that may be a piece of a key cut by ``/``: shorter than 12, or with an upper-case letter and
    not name-like (not ``snapshots``, a hex hash or ``CompiledProgramWithCalibratedScores``)."""
    return len(segment) < MIN_B64 or (any(c.isupper() for c in segment) and not name_like(segment))


def _plain(segment: str) -> bool:
    """No upper case: ``usr``, ``man7``, ``2`` (a run is trimmed of these at its ends)."""
    return not any(c.isupper() for c in segment)


def _clear_path(token: str, text: str, start: int, end: int) -> bool:
    """``/abs/..``, ``./..``, ``~/..``, ``name.ext`` or ``dir/dir/..``: a token the name test may spare."""
    first = token.split("/", 1)[0]
    return (token.startswith("/") or text[start - 1:start] in (".", "~") or bool(_EXTENSION_AFTER.match(text, end))
            or (token.count("/") >= 2 and bool(_PLAIN.fullmatch(first))))


def entropy_spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of high-entropy base64 tokens. A token that is clearly a path or a file name is judged by its runs
    of segments that may be pieces of a key and by each such segment, of which name-like ones are left
    alone: ``/tmp/pytest-of-x/test_Refuses0/a.json`` is no key, ``/models/<key>.gguf`` holds one."""
    for match in _B64_TOKEN.finditer(text):
        token, start = match.group(), match.start()
        if not _clear_path(token, text, start, match.end()):
            if high_entropy(token):
                yield match.span()
            continue
        runs: list[list[tuple[int, str]]] = [[]]
        offset = start
        for segment in token.split("/"):
            if _member(segment):
                runs[-1].append((offset, segment))
            elif runs[-1]:
                runs.append([])
            offset += len(segment) + 1
        for run in filter(None, runs):
            while run and _plain(run[0][1]):
                run.pop(0)
            while run and _plain(run[-1][1]):
                run.pop()
            if not run:
                continue
            first, last = run[0], run[-1]
            candidates = [(first[0], text[first[0]:last[0] + len(last[1])]), *run]
            found = next(((o, s) for o, s in candidates
                          if len(s) >= MIN_B64 and high_entropy(s) and not name_like(s)), None)
            if found:
                yield found[0], found[0] + len(found[1])
