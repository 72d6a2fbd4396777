"""Commands for the embedded server: up, down, psql, quickstart."""

from __future__ import annotations

import os

import click

from ..errors import PgmrlError
from ._common import data_dir_option, dsn_option, embedded_server


@click.command()
@data_dir_option
def up(data_dir):
    """Start the embedded PostgreSQL + pgvector server (initialised on first use) and print its DSN."""
    server = embedded_server(data_dir)
    dsn = server.start()
    click.echo(f"embedded PostgreSQL running; data in {server.data_dir}")
    click.echo(f"export PGMRL_DSN='{dsn}'")


@click.command()
@data_dir_option
def down(data_dir):
    """Stop the embedded server (its data stays)."""
    server = embedded_server(data_dir)
    click.echo("stopped" if server.stop() else "not running")


@click.command(context_settings={"ignore_unknown_options": True})
@data_dir_option
@dsn_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
def psql(data_dir, dsn, psql_args):
    """Open psql on the database (the embedded server unless --dsn). Extra arguments go to psql."""
    server = embedded_server(data_dir)
    if dsn:
        cmd = [server.psql_command()[0], dsn]
    else:
        if not server.is_running():
            raise PgmrlError(f"the embedded server is not running (looked in {server.data_dir}): `pgmrl up` first, "
                             f"--data-dir / PGMRL_DATA_DIR for another one, or pass --dsn")
        cmd = server.psql_command()
    os.execv(cmd[0], cmd + list(psql_args))


@click.command()
@data_dir_option
@click.option("--rows", default=2000, show_default=True, help="Sample documents to load (at most 2000 ship).")
@click.option("--batch-size", default=256, show_default=True, help="Rows per embedding batch.")
def quickstart(data_dir, rows, batch_size):
    """Start the embedded server, load real sample data (Debian package descriptions), embed it and search.

    Safe to run again: nothing is duplicated, and only what is missing is done."""
    from ..embedded.quickstart import run_quickstart

    run_quickstart(embedded_server(data_dir), rows=rows, batch_size=batch_size, echo=click.echo)
