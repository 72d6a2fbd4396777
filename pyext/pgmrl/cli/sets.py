"""Commands for embedding sets: create-set, alter-set, drop-set, status, failed, refit, search."""

from __future__ import annotations

import json

import click
from psycopg.types.json import Jsonb

from ..chunking import METHODS
from ..strategies import STRATEGIES
from ._common import dsn_option, json_object, resolve_dsn


@click.command("create-set")
@dsn_option
@click.argument("slug")
@click.option("--table", required=True, help="Source table (schema-qualified if needed); needs a one-column primary key.")
@click.option("--text", "text_column", required=True, help="Column to embed, or an expression such as \"title || ' ' || body\".")
@click.option("--name", help="Human-readable name (default: the slug).")
@click.option("--config", default="all-minilm-l6-v2", show_default=True, help="Embedding config (`pgmrl models`).")
@click.option("--truncate-dim", type=int, help="Coarse dimension: an MRL dim of the model, or for other models the "
                                               "size of the fitted rotation (e.g. 128). Omit for the model's default.")
@click.option("--no-on-create", is_flag=True, help="Do not embed inserted rows automatically.")
@click.option("--no-on-update", is_flag=True, help="Do not re-embed rows whose text changes.")
@click.option("--chunking", metavar="SPEC", help="Cut long texts into chunks embedded one by one: tokens (sliding "
              "windows), paragraphs (whole paragraphs/sentences packed), sections (each paragraph its own chunk(s)), or "
              "METHOD:SIZE[:OVERLAP] in model tokens (e.g. tokens:256:32). Default: one vector per row.")
@click.option("--language", default="english", show_default=True,
              help="Text search configuration of the full-text words (hybrid search).")
@click.option("--full-type", type=click.Choice(["halfvec", "vector"]), default="halfvec", show_default=True,
              help="How the full vectors are stored: halfvec (2 bytes a dimension: stage 2 of a two-stage search "
                   "reads half the pages; ranking barely changes) or vector (4 bytes).")
def create_set(dsn, slug, table, text_column, name, config, truncate_dim, no_on_create, no_on_update, chunking,
               language, full_type):
    """Create an embedding set SLUG over a table; existing rows are queued for the worker."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        client.conn.add_notice_handler(lambda d: click.echo(f"notice: {d.message_primary}", err=True))
        vt = client.create_set(name or slug, slug, table, text_column, config=config, truncate_dim=truncate_dim,
                               on_create=not no_on_create, on_update=not no_on_update,
                               chunking=chunking_spec(chunking), text_search_config=language, full_type=full_type)
    click.echo(f"created set {slug}; vectors in {vt}. Run `pgmrl serve` to embed the queued rows.")


@click.command("alter-set")
@dsn_option
@click.argument("slug")
@click.option("--config", help="New embedding config.")
@click.option("--truncate-dim", type=int, help="New coarse dimension.")
@click.option("--chunking", metavar="SPEC", help="New chunking: none, tokens, paragraphs, sections or METHOD:SIZE[:OVERLAP].")
@click.option("--language", help="New text search configuration of the full-text words.")
@click.option("--full-type", type=click.Choice(["halfvec", "vector"]),
              help="New full vector type (re-embeds; `pgmrl compact --full-type` converts in place instead).")
def alter_set(dsn, slug, config, truncate_dim, chunking, language, full_type):
    """Re-embed set SLUG with another model or coarse dimension in the background; the old vectors keep
    serving until the new ones are complete, then `pgmrl serve` switches them in atomically."""
    from ..db import connect, scalar

    with connect(resolve_dsn(dsn), autocommit=True) as conn:
        click.echo(scalar(conn.execute(
            "SELECT mrl.alter_embedding_set(%s, %s, %s, NULL, %s, %s, %s)",
            (slug, config, truncate_dim, None if chunking is None else Jsonb(chunking_spec(chunking) or "none"),
             language, full_type))))


@click.command()
@dsn_option
@click.argument("slug")
@click.option("--full-type", type=click.Choice(["halfvec", "vector"]),
              help="Also convert the full vectors to this type, in place (no re-embedding).")
def compact(dsn, slug, full_type):
    """Rewrite set SLUG's vectors table without dead rows (e.g. those an automatic rotation refit left where the
    worker does not own the table), optionally converting its full vectors between vector and halfvec. Run it as
    the set's owner; it blocks searches and writes of the set while it runs (seconds per 100,000 rows)."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        before, after, stored = client.compact(slug, full_type)
    click.echo(f"{slug}: vectors table {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, full vectors stored as {stored}")


def chunking_spec(spec: str | None) -> dict | None:
    """--chunking: none, tokens, paragraphs, sections, or METHOD:SIZE[:OVERLAP]."""
    if spec is None or spec == "none":
        return None
    method, *numbers = spec.split(":")
    if method not in METHODS or len(numbers) > 2 or not all(n.isdigit() for n in numbers):
        raise click.BadParameter("use none, tokens, paragraphs, sections or METHOD:SIZE[:OVERLAP], e.g. tokens:256:32",
                                 param_hint="--chunking")
    out: dict = {"method": method}
    if numbers:
        out["size"] = int(numbers[0])
    if len(numbers) > 1:
        out["overlap"] = int(numbers[1])
    return out


@click.command("drop-set")
@dsn_option
@click.argument("slug")
@click.confirmation_option(prompt="Drop the set, its triggers, queue and vectors?")
def drop_set(dsn, slug):
    """Drop an embedding set: its triggers, queue items and vectors (the source table stays)."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        client.drop_set(slug)
    click.echo(f"dropped set {slug}")


@click.command()
@dsn_option
@click.argument("slug", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(dsn, slug, as_json):
    """Rows, embedded vectors, queued and failed items of each set (or of SLUG)."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        rows = client.status(slug)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("no embedding sets yet (pgmrl create-set --help)")
    for r in rows:
        click.echo(f"{r['slug']}: {r['embedded']}/{r['rows']} rows embedded, {r['queued']} queued, {r['failed']} failed"
                   f" | {r['config']}, coarse: {r['coarse_method']}"
                   f"{'' if r['truncate_dim'] is None else ' ' + str(r['truncate_dim']) + '-d'}"
                   f"{'' if r['oldest_queued_age'] is None else ' | oldest queued ' + str(r['oldest_queued_age'])}")


@click.command()
@dsn_option
@click.argument("slug", required=False)
@click.option("--retry", is_flag=True, help="Put SLUG's dead-lettered items back in the queue.")
def failed(dsn, slug, retry):
    """List dead-lettered items (rows that failed --max-attempts times) with their last error; --retry re-queues."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        if retry:
            if not slug:
                raise click.UsageError("--retry needs a SLUG")
            click.echo(f"re-queued {client.retry_failed(slug)} item(s) of {slug}")
            return
        rows = client.failed_items(slug)
    if not rows:
        click.echo("no dead-lettered items")
    for r in rows:
        def printable(text) -> str:  # keys and errors may hold any text: no terminal escapes reach the screen
            return "".join(ch if ch.isprintable() else "?" for ch in str(text or ""))
        click.echo(f"{r['slug']} id={printable(r['id'])} attempts={r['attempts']} failed_at={r['failed_at']}: "
                   f"{printable(r['last_error'])}")


@click.command()
@dsn_option
@click.argument("slug")
def refit(dsn, slug):
    """Fit the set's PCA rotation now and rewrite its coarse vectors (non-MRL models)."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        n = client.refit(slug)
    click.echo(f"fitted the rotation of {slug} on {n} vectors" if n else f"{slug}: not enough vectors to fit yet")


@click.command()
@dsn_option
@click.argument("slug")
@click.argument("query")
@click.option("-k", "--k", default=10, show_default=True, help="Results to return.")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              help="Default: the set's (two_stage unless changed with mrl.configure_search).")
@click.option("--coarse-k", type=int, help="Stage-1 candidates (default: the set's, 100 or as tuned).")
@click.option("--coarse-dim", type=int, help="Coarse dimension to search with (default: the set's).")
@click.option("--filter", "filter_", metavar="JSON", help='Equality on source columns, e.g. \'{"section": "web"}\'.')
@click.option("--hybrid", is_flag=True, help="Fuse the set's full-text words with the dense search (reciprocal rank "
                                             "fusion); prints the fused score and both ranks.")
@click.option("--text-only", is_flag=True, help="The full-text words alone (rare words weigh most).")
@click.option("--dense-weight", type=float, default=1.0, show_default=True, help="--hybrid: weight of the dense ranks.")
@click.option("--text-weight", type=float, default=1.0, show_default=True, help="--hybrid: weight of the text ranks.")
@click.option("--rrf-k", type=int, default=60, show_default=True, help="--hybrid: RRF's rank constant.")
def search(dsn, slug, query, k, strategy, coarse_k, coarse_dim, filter_, hybrid, text_only, dense_weight, text_weight,
           rrf_k):
    """Search set SLUG for QUERY (embedded here with the set's model)."""
    from ..client import Client

    flt = json_object(filter_, "--filter") if filter_ else None
    with Client(resolve_dsn(dsn)) as client:
        client.conn.add_notice_handler(lambda d: click.echo(f"notice: {d.message_primary}", err=True))
        if hybrid:
            click.echo("rank  score    dense  text  id")
            for rank, r in enumerate(client.hybrid_search(slug, query, k, dense_weight=dense_weight,
                                                          text_weight=text_weight, rrf_k=rrf_k, filter=flt,
                                                          strategy=strategy), 1):
                dense, text = r["dense_rank"] or "-", r["text_rank"] or "-"
                click.echo(f"{rank:4d}  {r['score']:.5f}  {dense!s:>5}  {text!s:>4}  {r['id']}")
            return
        mode = "text" if text_only else "dense"
        for rank, (id_, dist) in enumerate(client.search(slug, query, k, strategy, coarse_k, coarse_dim, flt,
                                                         mode=mode), 1):
            click.echo(f"{rank:3d}  {dist:.4f}  {id_}")


@click.command()
@dsn_option
@click.argument("text")
@click.option("--config", default="all-minilm-l6-v2", show_default=True, help="Embedding config (`pgmrl models`).")
@click.option("--kind", type=click.Choice(["query", "document"]), default="query", show_default=True,
              help="Query or document prefix of the model.")
@click.option("--set", "slug", help="Embed with this set's model instead of --config.")
def embed(dsn, text, config, kind, slug):
    """Print the vector of TEXT in pgvector's text form, to paste into SQL: SELECT * FROM
    mrl.two_stage_search('docs', '[...]'::vector)."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        name = client.set_config(slug).name if slug else config
        vector = client.embed([text], name, kind)[0]
    click.echo("[" + ",".join(f"{float(x):.7g}" for x in vector) + "]")
