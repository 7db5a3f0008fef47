"""API tokens: random, shown once, stored as a SHA-256 hash, bound to one account, revocable.

A token has 256 bits of entropy, so a fast hash is the right tool here (a password hash only slows down
guessing of low-entropy secrets); lookup is by hash through a unique index, which is constant-time in the
secret.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "cdk_"  # noqa: S105 - a public marker, not a secret


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 6]
