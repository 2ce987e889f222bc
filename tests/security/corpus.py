"""Secret shapes planted by the security tests: each entry is ``(label, text carrying it, the secret)``.

The secrets are made up at import (random hex), so no real key is in the repository; the shapes are those
of real credentials (provider keys, headers, JWTs, DSNs, URL user info and query tokens, base64 keys),
written as a careless user or an attacker would (hex keys in prose, OAuth and presigned-URL query
parameters, command-line flags, odd key names), and environment variables with odd names."""

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
    """At least 75 ``(label, text, secret)`` triples, fresh values on every call."""
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
    return out + prose_hex_shapes() + query_shapes() + presigned_shapes() + flag_shapes() + key_name_shapes()


def prose_hex_shapes() -> list[tuple[str, str, str]]:
    """Hex keys a few words after a key word, as pasted into a chat or a data row."""
    h32, h40, h64, h48, h36 = _hex(32), _hex(40), _hex(64), _hex(48), _hex(36)
    return [
        ("hex_openai_prose", f"my openai key is {h32} if you need it", h32),
        ("hex_token_prose", f"token {h40}", h40),
        ("hex_secret_colon", f"secret: {h40}", h40),
        ("hex_api_key_arrow", f"here is the API key for staging -> {h64}", h64),
        ("hex_upper", f"KEY {h32.upper()}", h32.upper()),
        ("hex_access_key", f"use this access key {h48} for the bucket", h48),
        ("hex_password_is", f"the password is {h36}.", h36),
        ("hex_auth_paren", f"(auth {h64})", h64),
    ]


def query_shapes() -> list[tuple[str, str, str]]:
    """Credentials in URL query strings and fragments (OAuth flows, API keys in links)."""
    code, tok, sec = _alnum(30), _alnum(28), _alnum(24)
    return [
        ("query_oauth_code", f"https://app.example.com/callback?code={code}&state=af0ifjsldkj", code),
        ("query_fragment_token", f"https://app.example.com/cb#access_token={tok}&token_type=bearer&expires_in=3600",
         tok),
        ("query_refresh_token", f"https://login.example.com/token?grant_type=refresh_token&refresh_token={tok}", tok),
        ("query_id_token", f"https://app.example.com/cb?id_token={tok}&state=x", tok),
        ("query_client_secret", f"https://api.example.com/oauth?client_id=app&client_secret={sec}", sec),
        ("query_apikey", f"https://api.example.com/v1/search?q=x&apikey={sec}", sec),
        ("query_auth", f"https://api.example.com/feed.json?auth={sec}", sec),
        ("query_password", f"https://api.example.com/login?user=bob&password={sec}", sec),
        ("query_ws_token", f"wss://stream.example.com/ws?token={tok}", tok),
    ]


def presigned_shapes() -> list[tuple[str, str, str]]:
    """Presigned URLs: AWS S3 and GCS V4 signatures, an Azure SAS and connection string."""
    amz, goog, stoken = _hex(64), _hex(256), _alnum(40)
    sas = base64.b64encode(secrets.token_bytes(32)).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    account_key = base64.b64encode(secrets.token_bytes(64)).decode()
    goog_credential = f"svc-{_hex(6)}%40proj.iam.gserviceaccount.com%2F20250101%2Fauto%2Fstorage%2Fgoog4_request"
    s3 = ("https://bucket.s3.amazonaws.com/runs/compiled.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z"
          "&X-Amz-Expires=900&X-Amz-SignedHeaders=host")
    gcs = ("https://storage.googleapis.com/bucket/runs/compiled.json?X-Goog-Algorithm=GOOG4-RSA-SHA256"
           "&X-Goog-Credential={cred}&X-Goog-Date=20250101T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host"
           "&X-Goog-Signature={sig}")
    return [
        ("s3_presigned", f"{s3}&X-Amz-Signature={amz}", amz),
        ("s3_security_token", f"{s3}&X-Amz-Security-Token={stoken}&X-Amz-Signature={amz}", stoken),
        ("gcs_signature", gcs.format(cred=goog_credential, sig=goog), goog),
        ("gcs_credential", gcs.format(cred=goog_credential, sig="").removesuffix("&X-Goog-Signature="),
         goog_credential),
        ("azure_sas", f"https://acct.blob.core.windows.net/c/b.json?sv=2022-11-02&ss=b&srt=co&sp=r"
                      f"&se=2025-01-01T00:00:00Z&spr=https&sig={sas}", sas),
        ("azure_connection_string", f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};"
                                    "EndpointSuffix=core.windows.net", account_key),
    ]


def flag_shapes() -> list[tuple[str, str, str]]:
    """Secret-bearing command-line flags, both ``--flag VALUE`` and ``--flag=VALUE``."""
    pw = _alnum(16)
    return [
        ("flag_password", f"mytool login --password {pw} --verbose", pw),
        ("flag_password_eq", f"mysql -u root --password={pw} db", pw),
        ("flag_api_key", f"deploy --api-key {pw} --region eu-west-1", pw),
        ("flag_apikey_eq", f"deploy --apikey={pw}", pw),
        ("flag_token", f"gh-push --token {pw}", pw),
        ("flag_auth_token_quoted", f"cli --auth-token '{pw}' run", pw),
        ("flag_access_key", f"s3cmd --access-key {pw} ls", pw),
        ("flag_client_secret", f'oauth --client-secret "{pw}"', pw),
        ("flag_secret", f"vault write --secret {pw}", pw),
        ("flag_passwd", f"adduser --passwd {pw} bob", pw),
        ("flag_key", f"encrypt --key {pw} file.txt", pw),
        ("curl_user", f"curl -u admin:{pw} https://api.example.com/v1", pw),
    ]


def key_name_shapes() -> list[tuple[str, str, str]]:
    """Values under key names that say "secret" in a less usual way."""
    pw = _alnum(18)
    return [
        ("name_api_key_v2", f"api_key_v2 = '{pw}'", pw),
        ("name_passphrase", f"passphrase: {pw}", pw),
        ("name_openai_api_key_2", f'{{"openai_api_key_2": "{pw}"}}', pw),
        ("name_secretKey", f"secretKey: '{pw}'", pw),
        ("name_apiKeyV2", f"const apiKeyV2={pw};", pw),
        ("name_x_api_key", f"x-api-key={pw}", pw),
        ("name_private_key_pem", f'private_key_pem = "{pw}"', pw),
        ("name_db_password_old", f"db_password_old: {pw}", pw),
        ("name_secret_key_live", f"STRIPE_SECRET_KEY_LIVE={pw}", pw),
        ("name_accessToken", f'{{accessToken: "{pw}"}}', pw),
        ("name_clientSecret", f"clientSecret={pw}", pw),
        ("name_auth_token_old", f"AUTH_TOKEN_OLD={pw}", pw),
    ]


def env_shapes() -> dict[str, str]:
    """Environment variables whose *name* is the only sign of a secret, odd names included."""
    names = ("GITHUBTOKEN", "MYCORP_AUTH", "OPENAI_API_KEY", "DB_PASSWORD", "SERVICE_TOKEN", "HF_TOKEN",
             "AWS_SECRET_ACCESS_KEY", "MY_PASS", "SLACK_WEBHOOK_SECRET", "PGPASSWORD", "AZURE_CLIENT_CREDENTIAL",
             "SESSION_COOKIE", "X_PRIVATE")
    return {name: f"envsecret{_hex(16)}" for name in names}
