"""SCRAM-SHA-256 (RFC 5802, RFC 7677) for the PostgreSQL-protocol endpoint: the client proves it knows a token
without sending it, and the server proves it knows the token too. Any of the sidecar's tokens may be the password:
the proof is checked against every token's key, in constant time, so which one matched is not observable.

No channel binding (SCRAM-SHA-256-PLUS is not offered): the TLS of the connection, when configured, protects the
exchange; libpq then uses plain SCRAM-SHA-256. Tokens are used as given (SASLprep maps printable ASCII, which
generated tokens are, to itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from .auth import Tokens
from .pgwire_codec import Fatal

MECHANISM = "SCRAM-SHA-256"
ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Verifier:
    """(StoredKey, ServerKey) of every token under one random salt, computed once."""

    def __init__(self, tokens: Tokens):
        self.salt = secrets.token_bytes(16)
        self.keys: list[tuple[bytes, bytes]] = []
        for token in tokens.mapping:
            salted = hashlib.pbkdf2_hmac("sha256", token.encode(), self.salt, ITERATIONS)
            self.keys.append((hashlib.sha256(_hmac(salted, b"Client Key")).digest(), _hmac(salted, b"Server Key")))


class Exchange:
    """One SCRAM exchange: first() answers the client-first-message, final() checks the client-final-message and
    returns the server-final-message, or raises QueryError 28P01."""

    def __init__(self, verifier: Verifier):
        self.verifier = verifier
        self.client_first_bare = ""
        self.server_first = ""
        self.gs2_header = ""
        self.nonce = ""

    def first(self, message: str) -> str:
        gs2, sep, bare = _split_gs2(message)
        if not sep or gs2[0] not in "ny":  # 'p': channel binding, which was not offered
            raise _refused("unsupported SCRAM channel binding (the server offers SCRAM-SHA-256 without it)")
        attrs = _attributes(bare)
        if "r" not in attrs or "m" in attrs:
            raise _refused("malformed SCRAM client-first-message")
        self.gs2_header, self.client_first_bare = gs2, bare
        self.nonce = attrs["r"] + secrets.token_urlsafe(18)
        self.server_first = f"r={self.nonce},s={_b64(self.verifier.salt)},i={ITERATIONS}"
        return self.server_first

    def final(self, message: str) -> str | None:
        """The server-final-message when the proof is one of a token's, else None."""
        without_proof, _, proof_b64 = message.rpartition(",p=")
        attrs = _attributes(without_proof)
        if attrs.get("c") != _b64(self.gs2_header.encode()) or attrs.get("r") != self.nonce:
            raise _refused("SCRAM channel binding or nonce does not match")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise _refused("malformed SCRAM proof") from None
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        matched = None
        for stored_key, server_key in self.verifier.keys:  # every token, whether or not one matched already
            signature = _hmac(stored_key, auth_message)
            client_key = bytes(a ^ b for a, b in zip(proof, signature)) if len(proof) == len(signature) else b""
            if hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
                matched = server_key
        if matched is None:
            return None
        return "v=" + _b64(_hmac(matched, auth_message))


def _split_gs2(message: str) -> tuple[str, bool, str]:
    """(gs2 header with its trailing comma, whether it was found, client-first-message-bare)."""
    first = message.find(",")
    second = message.find(",", first + 1) if first >= 0 else -1
    if first < 0 or second < 0 or not message:
        return "", False, ""
    return message[:second + 1], True, message[second + 1:]


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and len(key) == 1:
            out.setdefault(key, value)
    return out


def _refused(detail: str) -> Fatal:
    return Fatal("28P01", detail)
