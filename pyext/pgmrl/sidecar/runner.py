"""`pgmrl serve`: runs the worker and the HTTP server in one process; resolves tokens, records the sidecar's URL."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psycopg

from ..db import connect, one, scalar
from ..embedding import EmbeddingConfig, get_embedder
from ..errors import PgmrlError
from ..worker import Metrics, Worker
from .app import create_app
from .auth import MIN_TOKEN_LENGTH, Tokens, default_token_file, generated_token, is_loopback, read_tokens_file
from .pgwire import PgWireServer, tls_context

log = logging.getLogger("pgmrl.sidecar")


def advertised_url(host: str, port: int, advertise_url: str | None) -> str:
    if advertise_url:
        return advertise_url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise PgmrlError(f"refusing to listen on {host} without a token: anyone who reaches it could use the "
                         f"sidecar. Set --token / PGMRL_TOKEN, or bind 127.0.0.1.")
    if token is not None and not token.strip():
        raise PgmrlError("the token is blank: give a long random one (e.g. `openssl rand -hex 32`)")
    if not is_loopback(host) and token is not None and len(token.strip()) < MIN_TOKEN_LENGTH:  # not None: checked above
        raise PgmrlError(f"refusing to listen on {host} with a {len(token.strip())}-character token: use at least "
                         f"{MIN_TOKEN_LENGTH} random characters (e.g. `openssl rand -hex 32`)")


def login_info(dsn: str) -> tuple[str, bool]:
    """(login role, whether it is a superuser) of the sidecar's connection."""
    with connect(dsn, autocommit=True) as conn:
        user, is_super = one(conn.execute(
            "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user"))
    return user, is_super


def resolve_tokens(dsn: str, token: str | None, token_role: str | None, tokens_file: str | None,
                   token_file: Path | None = None) -> tuple[dict[str, str | None], str | None]:
    """The token -> role map the HTTP API uses, and the path of a generated token (or None).

    A token without a role acts as the sidecar's own login, unless that login is a superuser: then it acts as
    pgmrl_worker (never as a superuser)."""
    user, is_super = login_info(dsn)
    if is_super:
        log.warning("the sidecar connects as %s, a superuser: give it a login that is a member of pgmrl_worker "
                    "(CREATE ROLE pgmrl_sidecar LOGIN IN ROLE pgmrl_worker), see README 'Security model'", user)
    default_role = token_role or ("pgmrl_worker" if is_super else None)
    mapping: dict[str, str | None] = {}
    written = None
    if tokens_file:
        mapping.update(read_tokens_file(Path(tokens_file)))
    if token:
        mapping[token] = default_role
    if not mapping:
        written = token_file or default_token_file()
        mapping[generated_token(written)] = default_role
    for role in set(mapping.values()) - {None}:
        try:
            connect(dsn, autocommit=True, role=role).close()
        except Exception as exc:
            raise PgmrlError(f"the sidecar's login {user} cannot act as role {role!r} ({str(exc).splitlines()[0]}): "
                             f"GRANT {role} TO {user}, or map the token to another role") from None
    return mapping, (str(written) if written else None)


def record_url(dsn: str, url: str, token: str | None, pg_address: tuple[str, int] | None = None) -> bool:
    """Tells the database where the sidecar is (mrl.settings): the HTTP URL for plpython3u, the PostgreSQL-protocol
    address for dblink, and the token both send. False when pgmrl is not installed there yet."""
    with connect(dsn, autocommit=True) as conn:
        if scalar(conn.execute("SELECT to_regprocedure('mrl.configure_sidecar(text, text, numeric)')")) is None:
            return False
        transport = "none"
        if scalar(conn.execute("SELECT to_regprocedure('mrl_internal._embed_transport()')")) is not None:
            transport = scalar(conn.execute("SELECT mrl_internal._embed_transport()"))
        if transport == "none":
            return True  # neither plpython3u nor dblink: SQL never calls the sidecar, nothing to record
        if transport == "dblink" and pg_address is None:
            log.warning("SQL on this database reaches the sidecar through dblink, which needs its PostgreSQL-protocol "
                        "endpoint: run `pgmrl serve --pg-port 8766` for mrl.embed() and text searches in SQL")
        wanted = {"sidecar_url": url, "sidecar_token": token,
                  "sidecar_pg": f"host={pg_address[0]} port={pg_address[1]}" if pg_address else None}
        try:
            current: dict[str, str] = dict(conn.execute(
                "SELECT key, value FROM mrl.settings WHERE key IN ('sidecar_url', 'sidecar_token', 'sidecar_pg')"
            ).fetchall())
            if all(v is None or current.get(k) == v for k, v in wanted.items()):
                return True
            conn.execute("SELECT mrl.configure_sidecar(%s, %s)", (url, token))
            if pg_address:
                conn.execute("SELECT mrl.configure_sidecar_pg(%s, %s)", pg_address)
        except psycopg.errors.InsufficientPrivilege:
            log.warning("this login may not record where the sidecar is in mrl.settings (SQL's mrl.embed uses it): "
                        "run `pgmrl configure --sidecar-url %s%s` as the schema's owner", url,
                        f" --pg-port {pg_address[1]}" if pg_address else "")
    return True


def run_sidecar(dsn: str, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                token_role: str | None = None, tokens_file: str | None = None, token_file: Path | None = None,
                advertise_url: str | None = None, http: bool = True, once: bool = False,
                default_config: str = "all-minilm-l6-v2", started: threading.Event | None = None,
                stop_event: threading.Event | None = None, work: bool = True, pg_port: int | None = None,
                pg_host: str | None = None, pg_tls_cert: str | None = None, pg_tls_key: str | None = None,
                record_dsn: str | None = None, **worker_kwargs) -> Worker:
    """Runs until SIGTERM/SIGINT (or stop_event). work=False serves HTTP only (no queue worker).

    HTTP tokens: `token` (acting as `token_role`), `tokens_file` (`ROLE TOKEN` lines); with neither, a token is
    generated into `token_file` (default: the user's config folder), readable by its owner only. `pg_port`: also
    the PostgreSQL-protocol endpoint (pgwire.py) on `pg_host` (default: `host`), with the same tokens as passwords;
    TLS with `pg_tls_cert` (and `pg_tls_key`). `record_dsn`: the login that records where the sidecar is (default:
    `dsn`; the embedded server's owner for `pgmrl serve` there, whose own login may not write mrl.settings)."""
    _check_binds(host, token, http and not once, pg_port, pg_host)
    metrics = Metrics()
    worker = Worker(dsn, metrics=metrics, stop_event=stop_event, **worker_kwargs)
    if threading.current_thread() is threading.main_thread():
        worker.install_signal_handlers()
    if once or not http:
        if started:
            started.set()
        worker.run(once=once)
        return worker

    # The API's connections each act as one role for their whole session (SET ROLE): they must not go through a
    # transaction pooler, whose next client would inherit the role. With --listen-dsn, they use that direct one.
    api_dsn = worker_kwargs.get("listen_dsn") or dsn
    tokens, written = resolve_tokens(api_dsn, token, token_role, tokens_file, token_file)
    if written:
        log.warning("HTTP API token written to %s (readable by you only); send it as `Authorization: Bearer ...`",
                    written)
    auth = Tokens(tokens)  # one object: HTTP's bearer tokens are the endpoint's passwords
    app = create_app(api_dsn, auth, metrics, default_config=default_config, open_embed=is_loopback(host))
    pg = _serve_pg(api_dsn, auth, app, pg_host or host, pg_port, pg_tls_cert, pg_tls_key, worker_kwargs.get("device"))
    server, thread = _serve_http(app, host, port, pg)
    url = advertised_url(host, port, advertise_url)
    db_token = token or (next(iter(tokens)) if written else None)  # what mrl.embed() sends (HTTP: bearer; dblink: password)
    pg_address = (_loopback_if_any(pg_host or host), pg_port) if pg is not None and pg_port else None
    if not record_url(record_dsn or dsn, url, db_token, pg_address):
        log.warning("pgmrl is not installed in this database yet: run `pgmrl install`, then restart serve")

    threading.Thread(target=_preload, args=(app, dsn, default_config, worker_kwargs.get("device")),
                     name="pgmrl-preload", daemon=True).start()
    log.info("sidecar listening on %s", url)
    if started:
        started.set()
    try:
        if work:
            worker.run(once=False)
        else:
            worker.stop.wait()
    finally:
        server.should_exit = True
        if pg is not None:
            pg.stop()
        thread.join(timeout=10)
        app.state.db.close_all()
    return worker


def _check_binds(host: str, token: str | None, serving: bool, pg_port: int | None, pg_host: str | None) -> None:
    """HTTP's bind rules, and the same for the PostgreSQL-protocol endpoint, which needs the HTTP server."""
    if pg_port is not None and not serving:
        raise PgmrlError("the PostgreSQL-protocol endpoint (--pg-port) runs beside the HTTP server: drop --once "
                         "and --no-http")
    if serving:
        check_bind(host, token)
    if pg_port is not None:
        check_bind(pg_host or host, token)


def _serve_http(app, host: str, port: int, pg: PgWireServer | None = None):
    """Starts uvicorn in a thread; returns (server, thread) once it listens, or raises PgmrlError (stopping `pg`,
    started before it)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="pgmrl-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        if pg is not None:
            pg.stop()
        raise PgmrlError(f"the HTTP server could not listen on {host}:{port} (in use?). Choose --port.")
    return server, thread


def _serve_pg(dsn: str, tokens: Tokens, app, host: str, port: int | None, tls_cert: str | None,
              tls_key: str | None, device: str | None) -> PgWireServer | None:
    """Starts the PostgreSQL-protocol endpoint (None without a port); it shares the app's metrics and config
    cache."""
    if port is None:
        return None
    tls = tls_context(tls_cert, tls_key) if tls_cert else None
    return PgWireServer(dsn, tokens, app.state.metrics, host=host, port=port, tls=tls, device=device,
                        configs=app.state.configs).start()


def _preload(app, dsn: str, default_config: str, device: str | None) -> None:
    """Loads the default model before the first request needs it; /readyz says ready once it is loaded."""
    try:
        with connect(dsn, autocommit=True) as conn:
            get_embedder(EmbeddingConfig.load(conn, default_config), device=device)
        app.state.model_ready = True
    except Exception as exc:  # readyz reports it
        log.warning("could not load the default model %s: %s", default_config, exc)


def _loopback_if_any(host: str) -> str:
    """The address the database uses for a sidecar bound to `host` (all interfaces: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
