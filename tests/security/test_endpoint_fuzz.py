"""The endpoint allow-list compares what a client would really send to, not strings.

The fuzz builds 12,000 URL forms from pieces an attacker would combine (case, user info, shorthand and
bracketed IPs, trailing dots, ports with zeros and signs, dot segments plain and percent-encoded, backslashes,
queries and fragments, look-alike unicode) plus random one-character mutations, and checks each against an
independent oracle: the URL as ``httpx`` (the client under LiteLLM and the OpenAI SDK) and ``urllib`` parse it,
allowed only if *both* readings, with percent-escapes decoded or not, land on the allowed server under the
allowed path. Property: the policy allows nothing the oracle refuses."""

from __future__ import annotations

import ipaddress
import posixpath
import random
import socket
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from optimizer.artifact import ArtifactError, ArtifactTrustError, TrustPolicy, load_artifact
from optimizer.artifact.endpoints import EndpointError, parse_endpoint
from optimizer.artifact.trust import LOOPBACK, _endpoint_allowed
from optimizer.models import ModelSpec
from tests.fixtures.artifacts import rewrite, save_sentiment

RULES = [LOOPBACK, "http://api.example.com:8080/v1", "https://api.openai.com/v1", "http://127.0.0.1:8000/v1",
         "http://[::1]:9000/v1/base"]
SCHEMES = ["http", "https", "HTTP", "hTtPs", "ftp", "file", "", "http:", "https:/", "ws"]
SEPARATORS = ["://", "://", "://", ":/", ":///", ":\\\\", "//", ":"]
USERINFO = ["", "", "", "user@", "user:pass@", "api.example.com:8080@", "@", "127.0.0.1@", "a%40b@"]
HOSTS = ["api.example.com", "API.EXAMPLE.COM", "api.example.com.", "api.openai.com", "127.0.0.1", "127.1",
         "0x7f.0.0.1", "2130706433", "0177.0.0.1", "localhost", "LOCALHOST", "localhost.", "[::1]", "[0:0::1]",
         "[::ffff:127.0.0.1]", "::1", "evil.com", "api.example.com.evil.com", "evil.com#api.example.com",
         "api.example.com\\@evil.com", "xn--80ak6aa92e.com", "\uff41pi.example.com", "api%2eexample.com", "",
         "127.0.0.1.nip.io", "[::1", "1.2.3.4", "127.0.0.1:8000@evil.com", "api.openai.com%00.evil.com"]
PORTS = ["", "", ":8080", ":08080", ":80", ":443", ":8000", ":9000", ":", ":99999", ":-1", ":8080x", ":+8080",
         ":0", ":8000:8000"]
SEGMENTS = ["v1", "v1", "base", "V1", "v10", "..", ".", "", "%2e%2e", "%2E", "%2f", "other", "chat", "v1%2f..",
            ";x", "\\..", " ", "..;", ".%2e"]
SUFFIXES = ["", "", "/", "?x=1", "#frag", "//", "/.", "/..", "?@evil.com", "#@evil.com"]
DEFAULT = {"http": 80, "https": 443}


CLEAN = {"scheme": ["http", "https"], "sep": ["://"], "user": [""], "port": ["", ":8080", ":8000", ":9000"],
         "host": ["api.example.com", "127.0.0.1", "localhost", "[::1]", "api.openai.com"], "segment": ["v1", "base"],
         "suffix": ["", "/"]}


def _forms(n: int, seed: int = 20261207) -> list[str]:
    """``n`` URL forms: each part clean (what the rules allow) 60% of the time, hostile otherwise."""
    rng = random.Random(seed)

    def pick(kind: str, hostile: list[str]) -> str:
        return rng.choice(CLEAN[kind] if rng.random() < 0.6 else hostile)

    out = []
    while len(out) < n:
        path = "".join("/" + pick("segment", SEGMENTS) for _ in range(rng.randint(0, 4)))
        url = (pick("scheme", SCHEMES) + pick("sep", SEPARATORS) + pick("user", USERINFO) + pick("host", HOSTS)
               + pick("port", PORTS) + path + pick("suffix", SUFFIXES))
        if rng.random() < 0.25:  # one random mutation
            i = rng.randrange(len(url) + 1)
            url = url[:i] + rng.choice("/.:@\\%#?[]0aA \t\x00\u0131\uff0e") + url[i + 1 if rng.random() < .5 else i:]
        out.append(url)
    return out


def _readings(url: str) -> list[tuple[str, str, int, tuple[str, ...]]] | None:
    """Every (scheme, host, port, segments) a client could take ``url`` for, or None if one refuses it."""
    try:
        parsed, split = httpx.URL(url), urlsplit(url)
        hosts = {parsed.host.lower(), (split.hostname or "").lower()}
        ports = {parsed.port or DEFAULT.get(parsed.scheme), split.port or DEFAULT.get(split.scheme.lower())}
    except Exception:  # noqa: BLE001 - a URL some client refuses is refused
        return None
    if parsed.userinfo or split.username is not None or "@" in url or "\\" in url:
        return None
    out = []
    for path in {parsed.path, split.path, unquote(parsed.path), unquote(split.path)}:
        segments = tuple(s for s in posixpath.normpath("/" + path).split("/") if s)
        out += [(parsed.scheme, h, p, segments) for h in hosts for p in ports]
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return socket.inet_aton(host)[0] == 127  # what the C resolver makes of 127.1, 0x7f.1 ...
        except OSError:
            return False


def _oracle(url: str, rule: str) -> bool:
    readings = _readings(url)
    if not readings:
        return False
    if rule == LOOPBACK:
        return all(s in DEFAULT and _loopback(h) for s, h, _, _ in readings)
    r = urlsplit(rule)
    want = (r.scheme, r.hostname, r.port or DEFAULT[r.scheme], tuple(s for s in r.path.split("/") if s))
    return all((s, h.strip("[]"), p) == want[:3] and seg[:len(want[3])] == want[3] for s, h, p, seg in readings)


def test_twelve_thousand_url_forms_allow_nothing_the_oracle_refuses():
    forms = _forms(12_000)
    allowed = refused = 0
    for url in forms:
        for rule in RULES:
            try:
                ours = _endpoint_allowed(url, [rule])
            except EndpointError:
                ours = False
            if ours:
                allowed += 1
                assert _oracle(url, rule), f"{url!r} allowed by {rule!r} but a client may send it elsewhere"
            else:
                refused += 1
    assert allowed > 200 and refused > 20_000  # the forms reach both sides of the policy


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:9/v1/../other", None), ("http://127.0.0.1:9/v1/%2e%2e/other", "percent"),
    ("http://127.0.0.1:notaport/v1", "port"), ("http://127.0.0.1:99999/v1", "port"),
    ("http://127.0.0.1:9@evil.com/v1", "user info"), ("http://evil.com\\@127.0.0.1:9/v1", "user info"),
    ("http://127.1:9/v1", "shorthand"), ("http://127.0.0.1:9//v1", "empty segment")])
def test_the_probes_attacks_on_the_allow_list(url, why):
    rule = "http://127.0.0.1:9/v1"
    if why is None:
        assert not _endpoint_allowed(url, [rule]) and parse_endpoint(url).segments == ("other",)
    else:
        with pytest.raises(EndpointError, match=why):
            _endpoint_allowed(url, [rule])
    assert _endpoint_allowed("HTTP://127.0.0.1:9/v1/./chat/", [rule])
    assert not _endpoint_allowed("http://127.0.0.1:9/v10", [rule])


@pytest.mark.parametrize("base", ["http://127.0.0.1:abc/v1", "http://[::1/v1", "http://127.0.0.1:8000/v1?x#y"])
def test_a_malformed_endpoint_in_an_artifact_is_an_artifact_error(tmp_path, base):
    spec = ModelSpec(name="openai/stub", provider="litellm", api_base="http://127.0.0.1:8000/v1")
    path = save_sentiment(tmp_path / "a.json", spec=spec)
    rewrite(path, lambda doc: doc["steps"]["classify"]["model"].update(api_base=base))
    with pytest.raises(ArtifactError) as info:  # the schema refuses a query first; the policy the rest
        load_artifact(path, trust=TrustPolicy.from_env())
    assert info.value.json_path == "steps.classify.model.api_base"
    assert isinstance(info.value, ArtifactTrustError) == ("?" not in base)
