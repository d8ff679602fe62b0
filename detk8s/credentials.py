"""Telling credentials apart from plain settings, so they never reach a manifest, a log line or an
error message: by the name they are given (any name with a credential word in it, not a list of
known variables) and by what they look like (the formats of common keys and tokens, secrets in
URLs, long random strings)."""

from __future__ import annotations

import math
import re
from collections import Counter
from urllib.parse import urlsplit

# Words that make a variable name a credential's, as whole `_`-separated parts (MONKEY is not).
_NAME_WORDS = {"SECRET", "SECRETS", "PASSWORD", "PASSWORDS", "PASSWD", "PASSPHRASE", "TOKEN",
               "TOKENS", "CREDENTIAL", "CREDENTIALS", "CREDS", "APIKEY", "AUTH", "PRIVATE",
               "KEY", "KEYS", "COOKIE", "SESSION", "SIGNATURE", "DSN"}  # fmt: skip
_NOT_CREDENTIALS = {"PWD", "OLDPWD"}  # directories, whatever they sound like
_FORMATS = {
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    "a Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "an API key (sk-...)": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "a Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "a JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
_RANDOM = re.compile(r"[A-Za-z0-9+/=_-]{32,}")


def credential_name(name: str) -> bool:
    """Whether a variable of this name holds a credential (AWS_SECRET_ACCESS_KEY, WANDB_API_KEY,
    HF_TOKEN, DB_PASSWORD, MY_AUTH...)."""
    upper = name.upper()
    if upper in _NOT_CREDENTIALS:
        return False
    parts = set(re.split(r"[^A-Z0-9]+", upper))
    return bool(parts & _NAME_WORDS) or "APIKEY" in upper.replace("_", "")


def credential_setting(name: str, value: str) -> str | None:
    """Why NAME=VALUE looks like a credential, or None: by its name, or by its value."""
    return "its name says so" if credential_name(name) else credential_kind(value)


def url_has_credentials(value: str) -> bool:
    """user:password@ (or a token as the user) in a URL."""
    if "://" not in value:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return bool(parts.username or parts.password)


def credential_kind(value: str) -> str | None:
    """What `value` looks like when it looks like a credential, else None."""
    for kind, pattern in _FORMATS.items():
        if pattern.search(value):
            return kind
    if url_has_credentials(value):
        return "a URL with credentials in it"
    for token in _RANDOM.findall(value):
        if _looks_random(token):
            return "a long random string (a key or token?)"
    return None


def _looks_random(token: str) -> bool:
    """Mixed case and digits with high entropy: keys and tokens; not paths, words, hex digests
    (one case) or version strings."""
    if not (any(c.islower() for c in token) and any(c.isupper() for c in token)
            and any(c.isdigit() for c in token)):  # fmt: skip
        return False
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy > 4.0
