"""pgmrl command line: one module per command group, attached to the `pgmrl` group below. Options that configure
a deployment (--dsn, --data-dir, serve's options, ...) can also come from PGMRL_* environment variables, shown in
--help."""

from __future__ import annotations

import logging

import click

from . import embedded, finetune, guide, measure, schema, serve, sets
from ._common import CONTEXT, Cli


@click.group(cls=Cli, context_settings=CONTEXT)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="pgmrl")
def cli(verbose):
    """pgmrl keeps embeddings of PostgreSQL rows up to date and searches them in two stages:
    a small Matryoshka-truncated vector for the HNSW search, the full vector for an exact re-rank.

    \b
    Start here:   pgmrl quickstart          (embedded server, sample data, search)
    Keep it:      pgmrl up / pgmrl psql / pgmrl down
    Your own DB:  pgmrl install --dsn ...;  pgmrl serve --dsn ...
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for _module, _names in ((embedded, ["up", "down", "psql", "quickstart"]), (schema, ["install", "configure"]),
                        (sets, ["create_set", "alter_set", "drop_set", "status", "failed", "refit", "compact", "search",
                                "embed"]),
                        (serve, ["serve"]), (measure, ["eval_", "tune", "index", "load_vectors"]),
                        (guide, ["models", "recommend", "storage"]), (finetune, ["finetune"])):
    for _name in _names:
        cli.add_command(getattr(_module, _name))


def main() -> None:
    cli(prog_name="pgmrl")
