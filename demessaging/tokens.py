"""JSON Web Tokens for Apache Pulsar's token authentication (HS256, the ``secret-key`` kind).

The same tokens as ``bin/pulsar tokens create --secret-key ...``, without starting a JVM::

    secret = new_secret()
    token = create_token(secret, "backend")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

__all__ = ["create_token", "new_secret"]


def new_secret() -> bytes:
    """A random 256-bit key for HS256 (the broker's ``tokenSecretKey``)."""
    return secrets.token_bytes(32)


def create_token(secret: bytes, subject: str, expires_in: float | None = None) -> str:
    """A JWT for the role ``subject``, signed with ``secret``.

    Parameters
    ----------
    secret
        The broker's secret key.
    subject
        The role the token authenticates as.
    expires_in
        Seconds until the token expires; it never does if None.
    """
    claims: dict[str, object] = {"sub": subject}
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    header = _encode({"alg": "HS256", "typ": "JWT"})
    body = _encode(claims)
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _encode(part: dict[str, object]) -> str:
    return _b64(json.dumps(part, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
