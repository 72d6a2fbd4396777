"""`pgmrl serve`: the embedding sidecar (worker + HTTP)."""

from __future__ import annotations

import click

from ._common import dsn_option, resolve_dsn


@click.command()
@dsn_option
@click.option("--once", is_flag=True, help="Drain the queue, fit due rotations, then exit (no HTTP).")
@click.option("--batch-size", default=256, show_default=True, envvar="PGMRL_BATCH_SIZE",
              help="Rows per embedding batch (one transaction) [env PGMRL_BATCH_SIZE]. Larger batches sort texts by "
                   "length better: 256 embeds about 15 percent faster than 64 on 2 cores.")
@click.option("--poll-interval", default=5.0, show_default=True, envvar="PGMRL_POLL_INTERVAL",
              help="Seconds between queue polls when no notification arrives [env PGMRL_POLL_INTERVAL].")
@click.option("--max-attempts", default=5, show_default=True, envvar="PGMRL_MAX_ATTEMPTS",
              help="Failed attempts before an item is dead-lettered [env PGMRL_MAX_ATTEMPTS].")
@click.option("--device", envvar="PGMRL_DEVICE", help="Torch device for the model (cpu, cuda) [env PGMRL_DEVICE].")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="PGMRL_HOST",
              help="HTTP bind address [env PGMRL_HOST]; anything but loopback needs --token.")
@click.option("--port", default=8765, show_default=True, envvar="PGMRL_PORT", help="HTTP port [env PGMRL_PORT].")
@click.option("--token", envvar="PGMRL_TOKEN",
              help="Bearer token of the HTTP API [env PGMRL_TOKEN]; at least 16 characters off loopback. Without "
                   "--token or --tokens-file, one is generated into --token-file.")
@click.option("--token-role", envvar="PGMRL_TOKEN_ROLE",
              help="Database role that --token's requests run as (SET ROLE) [env PGMRL_TOKEN_ROLE]. Default: the "
                   "sidecar's login, or pgmrl_worker when that login is a superuser.")
@click.option("--tokens-file", envvar="PGMRL_TOKENS_FILE", type=click.Path(dir_okay=False, exists=True),
              help="File of `ROLE TOKEN` lines, one token per role, readable by its owner only [env PGMRL_TOKENS_FILE].")
@click.option("--token-file", envvar="PGMRL_TOKEN_FILE", type=click.Path(dir_okay=False),
              help="Where a generated token is kept (mode 600) [env PGMRL_TOKEN_FILE; default: "
                   "~/.config/pgmrl/sidecar-token].")
@click.option("--advertise-url", envvar="PGMRL_ADVERTISE_URL",
              help="URL the database uses to reach this sidecar (default http://HOST:PORT) [env PGMRL_ADVERTISE_URL].")
@click.option("--no-http", is_flag=True, help="Run the worker only.")
@click.option("--listen-dsn", envvar="PGMRL_LISTEN_DSN",
              help="A direct connection (not through a pooler) for LISTEN, when --dsn goes through pgbouncer in "
                   "transaction mode [env PGMRL_LISTEN_DSN]. Without it new rows wait for the next poll there.")
@click.option("--pg-port", type=int, envvar="PGMRL_PG_PORT",
              help="Also answer the PostgreSQL protocol on this port (e.g. 8766): SQL without plpython3u gets query "
                   "embeddings through dblink; the password is a token [env PGMRL_PG_PORT].")
@click.option("--pg-host", envvar="PGMRL_PG_HOST",
              help="Bind address of --pg-port (default: --host) [env PGMRL_PG_HOST]; anything but loopback needs "
                   "--token.")
@click.option("--pg-tls-cert", envvar="PGMRL_PG_TLS_CERT", type=click.Path(dir_okay=False, exists=True),
              help="PEM certificate (chain) for TLS on --pg-port; without it SSLRequest is declined [env "
                   "PGMRL_PG_TLS_CERT].")
@click.option("--pg-tls-key", envvar="PGMRL_PG_TLS_KEY", type=click.Path(dir_okay=False, exists=True),
              help="PEM private key of --pg-tls-cert, when not in the same file [env PGMRL_PG_TLS_KEY].")
def serve(dsn, once, batch_size, poll_interval, max_attempts, device, host, port, token, token_role, tokens_file,
          token_file, advertise_url, no_http, listen_dsn, pg_port, pg_host, pg_tls_cert, pg_tls_key):
    """Run the embedding sidecar: the worker (LISTEN for queued rows, embed in batches, write the vectors) and the
    HTTP server (POST /v1/embed for mrl.embed(), /api/v1/..., /healthz, /readyz, /metrics, /docs).

    Privileges: connect as a login that is a member of pgmrl_worker (on the embedded server, `pgmrl serve`
    does so by itself); it warns when it runs as a superuser. Every HTTP endpoint that reads or writes the
    database needs a bearer token, loopback included, and runs as the token's role; /healthz, /readyz,
    /metrics and (on loopback) /v1/embed are open.

    With --pg-port it also answers the PostgreSQL protocol (password: a token), so SQL without plpython3u can
    fetch a query vector through dblink: SELECT embedding FROM embed('<config>', 'query', '<text>').

    It records its URL (and token) in mrl.settings so SQL can reach it. SIGTERM or Ctrl-C finishes the current
    batch and exits. Run several for more throughput (one HTTP port each)."""
    from ..sidecar import run_sidecar

    if batch_size < 1 or poll_interval <= 0 or max_attempts < 1:
        raise click.BadParameter("--batch-size, --poll-interval and --max-attempts must be positive")
    if pg_tls_key and not pg_tls_cert:
        raise click.BadParameter("--pg-tls-key needs --pg-tls-cert")
    if not once:
        pg = f"; PostgreSQL protocol on {pg_host or host}:{pg_port}" if pg_port is not None else ""
        click.echo(f"pgmrl sidecar: worker waiting for queued rows"
                   f"{'' if no_http else f'; HTTP on {host}:{port}'}{pg} (Ctrl-C to stop)", err=True)
    # On the embedded server (no --dsn) the sidecar's own login may not write mrl.settings: its owner records where
    # the sidecar is. The worker itself checks the schema (and waits for `pgmrl install` instead of exiting).
    record_dsn = None if dsn else resolve_dsn(None, check_schema=False)
    worker = run_sidecar(resolve_dsn(dsn, sidecar=True, check_schema=False), host=host, port=port, token=token,
                         token_role=token_role,
                         tokens_file=tokens_file, token_file=token_file, advertise_url=advertise_url,
                         http=not no_http, once=once, batch_size=batch_size, poll_interval=poll_interval,
                         max_attempts=max_attempts, device=device, listen_dsn=listen_dsn, pg_port=pg_port,
                         pg_host=pg_host, pg_tls_cert=pg_tls_cert, pg_tls_key=pg_tls_key, record_dsn=record_dsn)
    click.echo(f"embedded {worker.processed} queue item(s); {worker.failed} failed attempt(s)", err=True)
