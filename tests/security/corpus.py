"""Secret shapes planted by the security tests: each entry is ``(label, text carrying it, the secret)``.

The secrets are made up at import (random hex), so no real key is in the repository; the shapes are those
of real credentials (provider keys, headers, JWTs, DSNs, URL user info and query tokens, base64 keys) and
environment variables with odd names."""

from __future__ import annotations

import base64
import secrets


def _hex(n: int) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


def _alnum(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n - 3)) + "aZ7"


def _jwt() -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    header, claims = b'{"alg":"HS256","typ":"JWT"}', b'{"sub":"' + _hex(12).encode() + b'"}'
    return ".".join(part(p) for p in (header, claims, secrets.token_bytes(32)))


def shapes() -> list[tuple[str, str, str]]:
    """At least 50 ``(label, text, secret)`` triples, fresh values on every call."""
    s = {
        "openai": "sk-" + _alnum(48),
        "openai_proj": "sk-proj-" + _alnum(40),
        "anthropic": "sk-ant-api03-" + _alnum(40),
        "github_pat": "ghp_" + _alnum(36),
        "github_oauth": "gho_" + _alnum(36),
        "github_fine": "github_pat_" + _alnum(60),
        "gitlab": "glpat-" + _alnum(20),
        "hf": "hf_" + _alnum(34),
        "aws_id": "AKIA" + _alnum(16).upper(),
        "aws_secret": _alnum(40),
        "google": "AIza" + _alnum(35),
        "slack_bot": "xoxb-" + _hex(12) + "-" + _alnum(24),
        "stripe_live": "sk_live_" + _alnum(24),
        "stripe_restricted": "rk_live_" + _alnum(24),
        "sendgrid": "SG." + _alnum(22) + "." + _alnum(43),
        "npm": "npm_" + _alnum(36),
        "pypi": "pypi-AgEIcHlwaS5vcmc" + _alnum(60),
        "twilio": "SK" + _hex(32),
        "mailchimp": _hex(32) + "-us12",
        "jwt": _jwt(),
        "b64": base64.b64encode(secrets.token_bytes(30)).decode(),
        "telegram": f"{secrets.randbelow(10**9) + 10**8}:AA" + _alnum(33),
        "discord": "M" + _alnum(23) + "." + _alnum(6) + "." + _alnum(27),
        "pem": "-----BEGIN RSA PRIVATE KEY-----",
    }
    pw, user = _alnum(14), "admin"
    out = [(name, f"calling the service with {value} now", value) for name, value in s.items()]
    out += [
        ("bearer", f"Authorization: Bearer {s['b64']}", s["b64"]),
        ("token_header", f"Authorization: Token {pw}", pw),
        ("basic", f"Authorization: Basic {base64.b64encode(f'{user}:{pw}'.encode()).decode()}",
         base64.b64encode(f"{user}:{pw}".encode()).decode()),
        ("custom_auth_header", f"authorization={pw}", pw),
        ("proxy_auth", f"Proxy-Authorization: Digest {pw}", pw),
        ("x_api_key_header", f"X-Api-Key: {pw}", pw),
        ("url_userinfo", f"https://{user}:{pw}@api.example.com/v1", pw),
        ("url_token_only", f"https://{s['github_pat']}@github.com/org/repo.git", s["github_pat"]),
        ("postgres_dsn", f"postgresql://{user}:{pw}@db.internal:5432/optuna", pw),
        ("postgres_psycopg", f"postgresql+psycopg://{user}:{pw}@127.0.0.1/optuna", pw),
        ("mysql_dsn", f"mysql://root:{pw}@localhost/db", pw),
        ("redis_dsn", f"redis://:{pw}@cache:6379/0", pw),
        ("dsn_kv", f"host=db user={user} password={pw} dbname=x", pw),
        ("query_key", f"https://api.example.com/v1/models?key={pw}", pw),
        ("query_token", f"https://api.example.com/v1?foo=1&access_token={pw}", pw),
        ("query_sig", f"https://blob.example.com/c?sv=2020&sig={pw}", pw),
        ("json_api_key", f'{{"api_key": "{pw}", "model": "gpt"}}', pw),
        ("json_password", f'{{"password": "{pw}"}}', pw),
        ("yaml_secret", f"client_secret: {pw}", pw),
        ("env_line", f"export OPENAI_API_KEY={pw}", pw),
        ("kwarg", f"LM(model='x', api_key='{pw}')", pw),
        ("python_token", f"token = \"{pw}\"", pw),
        ("private_key_assign", f"private_key={pw}", pw),
        ("error_echo", f"AuthenticationError: Incorrect API key provided: {s['openai']}", s["openai"]),
        ("cookie", f"Cookie: session={pw}", pw),
        ("aws_pair", f"aws_secret_access_key = {s['aws_secret']}", s["aws_secret"]),
        ("passwd", f"passwd: {pw}", pw),
    ]
    return out


def env_shapes() -> dict[str, str]:
    """Environment variables whose *name* is the only sign of a secret, odd names included."""
    names = ("GITHUBTOKEN", "MYCORP_AUTH", "OPENAI_API_KEY", "DB_PASSWORD", "SERVICE_TOKEN", "HF_TOKEN",
             "AWS_SECRET_ACCESS_KEY", "MY_PASS", "SLACK_WEBHOOK_SECRET", "PGPASSWORD", "AZURE_CLIENT_CREDENTIAL",
             "SESSION_COOKIE", "X_PRIVATE")
    return {name: f"envsecret{_hex(16)}" for name in names}
