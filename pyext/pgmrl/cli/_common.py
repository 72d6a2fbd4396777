"""What the command modules share: the --dsn and --data-dir options, finding the database, and turning errors into
clean messages (no tracebacks for problems the user can fix)."""

from __future__ import annotations

import json
import os

import click
import psycopg

from ..errors import PgmrlError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def data_dir_option(f):
    return click.option("--data-dir", envvar="PGMRL_DATA_DIR", type=click.Path(file_okay=False),
                        help="Embedded server's data directory [env PGMRL_DATA_DIR; default: /var/lib/pgmrl/pgdata "
                             "as root, else a per-user data folder].")(f)


def dsn_option(f):
    return click.option("--dsn", envvar="PGMRL_DSN",
                        help="PostgreSQL connection string [env PGMRL_DSN]. Default: the embedded server, if it "
                             "runs (`pgmrl up`).")(f)


def embedded_server(data_dir):
    from ..embedded.server import EmbeddedServer, default_data_dir

    return EmbeddedServer(data_dir or default_data_dir())


def resolve_dsn(dsn: str | None, sidecar: bool = False, check_schema: bool = True) -> str:
    """The DSN given, else the embedded server's (for `sidecar`: its least-privileged sidecar login, if installed).
    `check_schema`: refuse, with what to do, a database whose pgmrl schema is not this pgmrl's (`pgmrl install`)."""
    if not dsn:
        server = embedded_server(os.environ.get("PGMRL_DATA_DIR"))
        if not server.is_running():
            raise PgmrlError(f"no database given: pass --dsn (or set PGMRL_DSN), or start the embedded server with "
                             f"`pgmrl up` (looked in {server.data_dir})")
        dsn = server.sidecar_dsn() if sidecar else server.dsn()
    if check_schema:
        from ..db import connect
        from ..schema import schema_problem

        with connect(dsn, autocommit=True) as conn:
            problem = schema_problem(conn)
        if problem:
            raise PgmrlError(problem)
    return dsn


def json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc.msg}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter('must be a JSON object, e.g. {"section": "web"}', param_hint=option)
    return value


class Cli(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PgmrlError as exc:
            raise click.ClickException(str(exc)) from None
        except psycopg.Error as exc:
            diag = exc.diag
            msg = diag.message_primary or str(exc)
            if diag.message_hint:
                msg += f"\nhint: {diag.message_hint}"
            if diag.sqlstate:
                msg += f"\n(SQLSTATE {diag.sqlstate})"
            raise click.ClickException(msg) from None
