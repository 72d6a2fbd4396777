"""`pgmrl serve`: the worker and the HTTP server in one process."""

from __future__ import annotations

import logging
import threading
import time

from .db import connect
from .embedders import EmbeddingConfig, get_embedder
from .errors import PgmrlError
from .http import Metrics, create_app, is_loopback
from .worker import Worker

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


def record_url(dsn: str, url: str, token: str | None) -> bool:
    """Tells the database where the sidecar is (mrl.settings). False when pgmrl is not installed there yet."""
    with connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regprocedure('mrl.configure_sidecar(text, text, numeric)')").fetchone()[0] is None:
            return False
        conn.execute("SELECT mrl.configure_sidecar(%s, %s)", (url, token))
    return True


def run_sidecar(dsn: str, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                advertise_url: str | None = None, http: bool = True, once: bool = False,
                default_config: str = "all-minilm-l6-v2", started: threading.Event | None = None,
                stop_event: threading.Event | None = None, work: bool = True, **worker_kwargs) -> Worker:
    """Runs until SIGTERM/SIGINT (or stop_event). work=False serves HTTP only (no queue worker)."""
    import uvicorn

    if http and not once:
        check_bind(host, token)
    metrics = Metrics()
    worker = Worker(dsn, metrics=metrics, stop_event=stop_event, **worker_kwargs)
    if threading.current_thread() is threading.main_thread():
        worker.install_signal_handlers()
    if once or not http:
        if started:
            started.set()
        worker.run(once=once)
        return worker

    app = create_app(dsn, token, metrics, default_config=default_config)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="pgmrl-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        raise PgmrlError(f"the HTTP server could not listen on {host}:{port} (in use?). Choose --port.")
    url = advertised_url(host, port, advertise_url)
    if not record_url(dsn, url, token):
        log.warning("pgmrl is not installed in this database yet: run `pgmrl install`, then restart serve")

    def preload():
        try:
            with connect(dsn, autocommit=True) as conn:
                get_embedder(EmbeddingConfig.load(conn, default_config), device=worker_kwargs.get("device"))
            app.state.model_ready = True
        except Exception as exc:  # readyz reports it
            log.warning("could not load the default model %s: %s", default_config, exc)

    threading.Thread(target=preload, name="pgmrl-preload", daemon=True).start()
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
        thread.join(timeout=10)
        app.state.db.close_all()
    return worker
