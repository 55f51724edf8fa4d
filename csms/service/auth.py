"""Station passwords (security profiles 1 and 2): salted scrypt, constant-time checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = ["hash_password", "validate_password", "verify_password"]

# 1.6 security whitepaper / 2.0.1 A00.FR.2xx: 16 to 40 characters of passwordString
# (printable ASCII without the space... we accept the OCA charset of printable ASCII).
_PASSWORD = re.compile(r"^[\x21-\x7e]{16,40}$")
_N, _R, _P = 2**14, 8, 1


def validate_password(password: str) -> str:
    if not _PASSWORD.match(password):
        raise ValueError("a station password is 16 to 40 printable ASCII characters, no spaces")
    return password


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)
