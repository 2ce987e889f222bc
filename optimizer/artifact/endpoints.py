"""Endpoint URLs as the policy compares them: parsed strictly, normalised, matched by path segments.

An ``api_base`` receives the user's provider key, so an allow-list entry must mean one server and one path
prefix, whatever spelling the artifact uses. Both the entry and the artifact's URL go through
:func:`parse_endpoint`, which accepts only the unambiguous subset of RFC 3986 that HTTP clients agree on:

- scheme ``http`` or ``https`` (case-insensitive); no user info, query or fragment;
- host: a DNS name (ASCII letters, digits, ``-``, dot-separated labels, the last not all digits), a
  dotted-quad IPv4 address without leading zeros, or a bracketed IPv6 address; compared lower-cased and
  canonical (``[::1]`` and ``[0:0::1]`` are one host); shorthand IPv4 forms (``127.1``, ``0x7f.0.0.1``,
  ``2130706433``), trailing dots, percent-encoded or non-ASCII hosts are refused, not guessed at;
- port: 1-65535 in decimal, the scheme's default when absent (``:443`` and nothing are one port);
- path: no percent-encoding, backslash, whitespace or control characters; dot segments are resolved as a
  client resolves them (``/v1/../other`` *is* ``/other``), and a leftover empty segment is refused.

A URL is allowed when some entry has its scheme, host and port and the entry's path segments are a prefix of
its path segments (``/v1`` allows ``/v1/chat`` but not ``/v10`` or ``/v1/../other``).

>>> parse_endpoint("HTTP://LocalHost:80/v1/./chat/")
Endpoint(scheme='http', host='localhost', port=80, segments=('v1', 'chat'))
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_QUAD = re.compile(r"^(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class EndpointError(ValueError):
    """A URL that is not an unambiguous http(s) endpoint; the message says which part."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed, canonical endpoint: what a client connects to and the path segments it sends."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    def within(self, prefix: Endpoint) -> bool:
        """Same server, and ``prefix``'s path segments lead this one's."""
        return (self.scheme, self.host, self.port) == (prefix.scheme, prefix.host, prefix.port) and \
            self.segments[:len(prefix.segments)] == prefix.segments

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def _host(text: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise EndpointError(f"unclosed IPv6 bracket in host {text!r}")
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError as exc:
            raise EndpointError(f"bad IPv6 address {text!r}: {exc}") from None
    host = text.lower()
    if _QUAD.match(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise EndpointError(f"bad IPv4 address {text!r}") from None
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise EndpointError(f"host {text!r} is not a plain DNS name or IP address")
    if labels[-1].isdigit() or re.match(r"^0x[0-9a-f]*$", labels[-1]):
        raise EndpointError(f"host {text!r} looks like a shorthand IP address; write it as a.b.c.d")
    return host


def _segments(path: str) -> tuple[str, ...]:
    """RFC 3986 remove_dot_segments, then the segments; a trailing slash is not a segment."""
    if not _PATH_CHARS.match(path):
        raise EndpointError(f"path {path!r} has characters an endpoint may not use (percent-encoding, "
                            "backslash, whitespace or non-ASCII)")
    out: list[str] = []
    parts = path.split("/")[1:] if path.startswith("/") else ([] if not path else path.split("/"))
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "..":
            if out:
                out.pop()
        elif part == "." or (part == "" and last):
            continue
        elif part == "":
            raise EndpointError(f"path {path!r} has an empty segment ('//')")
        else:
            out.append(part)
    return tuple(out)


def parse_endpoint(url: object) -> Endpoint:
    """The canonical :class:`Endpoint` of ``url``; raises :class:`EndpointError` saying what is wrong."""
    if not isinstance(url, str) or not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        raise EndpointError(f"{url!r} is not a printable ASCII URL without spaces")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise EndpointError(f"{url!r}: the scheme must be http:// or https://")
    if any(c in rest for c in "?#\\@"):
        raise EndpointError(f"{url!r}: an endpoint may not carry user info, a query or a fragment")
    authority, slash, path = rest.partition("/")
    host, port = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        host, port = authority[:close + 1], authority[close + 1:]
        if port and not port.startswith(":"):
            raise EndpointError(f"{url!r}: unexpected text after the IPv6 address")
        port = port[1:]
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    if port and (not _PORT.match(port) or not 0 < int(port) <= 65535):
        raise EndpointError(f"{url!r}: the port must be a number from 1 to 65535 (got {port!r})")
    if authority.count(":") > 1 and not authority.startswith("["):
        raise EndpointError(f"{url!r}: an IPv6 host must be in brackets")
    return Endpoint(scheme, _host(host), int(port) if port else DEFAULT_PORTS[scheme], _segments(slash + path))
