"""Who may use the sidecar's HTTP API: bearer tokens, the database role each one acts as, where a generated token
is kept, and the ASGI guard that checks the token and caps the body before anything reads it."""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
from pathlib import Path

from ..errors import PgmrlError

MAX_BODY = 16 * 1024 * 1024  # bytes; larger requests are refused (413) before they are read
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
MIN_TOKEN_LENGTH = 16  # for a server reachable from other hosts


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive), else None."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Tokens:
    """Bearer tokens and the database role each one acts as (None: the sidecar's own login)."""

    def __init__(self, mapping: dict[str, str | None]):
        for token in mapping:
            if not token or not token.strip():
                raise PgmrlError("a blank token is refused")
        self.mapping = dict(mapping)

    def role_of(self, given: str | None) -> tuple[bool, str | None]:
        """(known, role) for a presented token; compares every token in constant time."""
        found, role = False, None
        for token, r in self.mapping.items():
            if given is not None and hmac.compare_digest(given.encode(), token.encode()):
                found, role = True, r
        return found, role


class Guard:
    """ASGI middleware: caps the body size and checks the token before anything reads the body."""

    def __init__(self, app, tokens: Tokens, open_embed: bool):
        self.app = app
        self.tokens = tokens
        self.open_embed = open_embed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return await self._refuse(send, 413, f"request body over {MAX_BODY} bytes")
        path = scope.get("path", "")
        presented = headers.get("authorization")
        known, role = self.tokens.role_of(parse_bearer(presented or ""))
        open_path = path in OPEN_PATHS or (self.open_embed and path == "/v1/embed" and presented is None)
        if not known and not open_path:  # (a wrong token is refused even where none is needed: it is a mistake)
            return await self._refuse(send, 401, "missing or wrong bearer token",
                                      [(b"www-authenticate", b"Bearer")])
        scope.setdefault("state", {})["role"] = role if known else None
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            receive = await self._bounded(receive, send)
            if receive is None:
                return None
        return await self.app(scope, receive, send)

    async def _bounded(self, receive, send):
        """Reads a body of unknown length up to the cap, then replays it (None: refused)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY:
                await self._refuse(send, 413, f"request body over {MAX_BODY} bytes")
                return None
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return replay

    @staticmethod
    async def _refuse(send, status: int, detail: str, extra=()) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *extra]})
        await send({"type": "http.response.body", "body": body})


def default_token_file() -> Path:
    import platformdirs

    return platformdirs.user_config_path("pgmrl") / "sidecar-token"


def generated_token(path: Path) -> str:
    """The token in `path` (only its owner may read it), created with a random one when missing."""
    path = Path(path).expanduser()
    if path.exists():
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or st.st_uid != os.getuid():
            raise PgmrlError(f"{path} may be read by others (mode {stat.filemode(st.st_mode)}): "
                             f"chmod 600 it, or remove it to get a new token")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) >= MIN_TOKEN_LENGTH:
            return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def read_tokens_file(path: Path) -> dict[str, str | None]:
    """Lines `ROLE TOKEN` (# comments); the file must be readable by its owner only."""
    path = Path(path).expanduser()
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PgmrlError(f"{path} may be read by others (mode {stat.filemode(st.st_mode)}): chmod 600 it")
    out: dict[str, str | None] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) < MIN_TOKEN_LENGTH:
            raise PgmrlError(f"{path}:{n}: expected `ROLE TOKEN` with a token of at least {MIN_TOKEN_LENGTH} characters")
        out[parts[1]] = parts[0]
    if not out:
        raise PgmrlError(f"{path} holds no token")
    return out
