"""Commands for the schema: install (or upgrade), and configure where SQL reaches the sidecar."""

from __future__ import annotations

import click

from ._common import dsn_option, resolve_dsn


@click.command()
@dsn_option
@click.option("--print-sql", is_flag=True,
              help="Print the install script for psql instead of running it: `pgmrl install --print-sql | psql ...` "
                   "(one transaction, stops at the first error; CREATE EXTENSION vector first).")
@click.option("--vector-schema", default="public", show_default=True, help="With --print-sql: pgvector's schema.")
@click.option("--plpython/--no-plpython", default=False, show_default=True,
              help="With --print-sql: the server has plpython3u (SQL calls the sidecar's HTTP API).")
@click.option("--dblink-schema", help="With --print-sql and no plpython3u: dblink's schema (CREATE EXTENSION dblink "
                                      "first); SQL then calls the sidecar's PostgreSQL-protocol endpoint.")
def install(dsn, print_sql, vector_schema, plpython, dblink_schema):
    """Install or upgrade the `mrl` schema (idempotent; needs pgvector >= 0.7)."""
    from .. import schema

    if print_sql:
        click.echo(schema.psql_script(vector_schema, plpython, dblink_schema), nl=False)
        return
    from ..client import Client

    with Client(resolve_dsn(dsn, check_schema=False)) as client:
        applied = client.install()
    click.echo(f"pgmrl schema installed; migrations applied now: {', '.join(applied) or 'none (already current)'}")


@click.command()
@dsn_option
@click.option("--sidecar-url", default="http://127.0.0.1:8765", show_default=True,
              help="URL the database uses to reach the sidecar's HTTP API (plpython3u servers), e.g. http://10.0.0.5:8765.")
@click.option("--pg-port", type=int, help="Port of the sidecar's PostgreSQL-protocol endpoint (`pgmrl serve --pg-port`), "
                                          "for servers that embed through dblink.")
@click.option("--pg-host", default="127.0.0.1", show_default=True, help="Host of that endpoint, as the database sees it.")
@click.option("--token", envvar="PGMRL_TOKEN", help="The sidecar's token (bearer token / password) [env PGMRL_TOKEN].")
@click.option("--timeout", type=float, help="Seconds SQL waits for the sidecar (default 30).")
def configure(dsn, sidecar_url, pg_port, pg_host, token, timeout):
    """Tell the database where the sidecar is (for mrl.embed(), text searches and sync mode): its HTTP URL for
    plpython3u, its PostgreSQL-protocol address for dblink, and the token. `pgmrl serve` does this by itself where
    its login may."""
    from ..db import connect

    with connect(resolve_dsn(dsn), autocommit=True) as conn:
        conn.execute("SELECT mrl.configure_sidecar(%s, %s, %s)", (sidecar_url, token, timeout))
        if pg_port is not None:
            conn.execute("SELECT mrl.configure_sidecar_pg(%s, %s)", (pg_host, pg_port))
    click.echo(f"the database now reaches the sidecar at {sidecar_url}"
               + (f" (HTTP) and {pg_host}:{pg_port} (PostgreSQL protocol)" if pg_port is not None else ""))
