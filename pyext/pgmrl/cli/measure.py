"""CLI commands for measuring and tuning search: eval, tune, index, load-vectors."""

from __future__ import annotations

import json

import click
import numpy as np

from ..errors import PgmrlError
from ..strategies import STRATEGIES, TWO_STAGE
from ._common import dsn_option, resolve_dsn


@click.command("eval")
@dsn_option
@click.option("--set", "slug", required=True, help="Embedding set to evaluate.")
@click.option("--queries", "queries_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help='JSONL: {"query": text, "relevant": [ids]} or {"vector": [...], "relevant": [ids]} per line.')
@click.option("--query-vectors", type=click.Path(exists=True, dir_okay=False),
              help="Precomputed query vectors (.npy, one row per query line) instead of embedding the texts.")
@click.option("--strategy", "strategies", multiple=True, type=click.Choice(STRATEGIES),
              help="Strategy to evaluate (repeatable). Default: every strategy the set can serve.")
@click.option("--limit", type=int, help="Use only the first N queries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-lexical", is_flag=True, help="Skip the full-text ('text') and hybrid rows.")
def eval_(dsn, slug, queries_file, query_vectors, strategies, limit, as_json, no_lexical):
    """Retrieval quality of a set: Recall@1/10/100, MRR@10, nDCG@10 per strategy, agreement@10 of each
    with exact search, and latency. Queries with text are also ranked by the set's full-text words alone
    ('text') and by hybrid search ('hybrid'), side by side with the dense strategies."""
    from tqdm import tqdm

    from .. import evaluate
    from ..client import Client

    vecs = np.load(query_vectors, mmap_mode="r") if query_vectors else None
    qs = evaluate.read_queries(queries_file, vecs)
    if limit:
        qs = evaluate.QuerySet(qs.texts[:limit], qs.vectors[:limit], qs.relevant[:limit])
    with Client(resolve_dsn(dsn)) as client, \
            tqdm(total=len(qs), desc="queries", unit="q", disable=as_json, leave=False) as bar:
        results = client.evaluate(slug, qs, strategies or None, progress=bar, lexical=not no_lexical)
    if as_json:
        click.echo(json.dumps({"set": slug, "queries": len(qs), "results": [r.row() for r in results]}, indent=2))
    else:
        click.echo(f"{slug}: {len(qs)} queries")
        click.echo(evaluate.format_table(results))

@click.command()
@dsn_option
@click.argument("slug")
@click.option("--target", default=0.99, show_default=True, help="Agreement@10 with exact search to reach.")
@click.option("--sample", default=500, show_default=True, help="Sample queries (perturbed stored vectors).")
@click.option("--strategy", type=click.Choice(TWO_STAGE),
              help="Two-stage flavour to tune (default: the set's).")
def tune(dsn, slug, target, sample, strategy):
    """Find the smallest coarse_k / ef_search reaching --target and store it as the set's default
    (the same as SELECT * FROM mrl.tune(...))."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        client.conn.add_notice_handler(lambda d: click.echo(f"{d.severity.lower()}: {d.message_primary}", err=True))
        rows = client.conn.execute("SELECT * FROM mrl.tune(%s, %s, %s, 10, %s)",
                                   (slug, target, sample, strategy)).fetchall()
    click.echo("coarse_k  ef_search  agreement  lower_95%  p50_ms")
    for ck, ef, agree, p50, chosen, low in rows:
        click.echo(f"{ck:8d}  {ef:9d}  {agree:9.4f}  {low:9.4f}  {p50:6.2f}{'  <- stored' if chosen else ''}")
    click.echo("lower_95%: the one-sided 95% lower bound of the agreement (mean - 1.645 standard errors); "
               "the first trial whose bound reaches --target is stored.")

@click.command()
@dsn_option
@click.argument("slug")
@click.option("--full", is_flag=True, help="Full-dimension HNSW index (strategy hnsw).")
@click.option("--binary", is_flag=True, help="Binary-quantized HNSW index (strategy binary_two_stage).")
@click.option("--coarse-dim", type=int, help="HNSW index on a coarse prefix, for coarse_dim searches.")
@click.option("--m", default=16, show_default=True, help="HNSW neighbours per node.")
@click.option("--ef-construction", default=64, show_default=True, help="HNSW build-time candidate list size.")
def index(dsn, slug, full, binary, coarse_dim, m, ef_construction):
    """Build an extra search index for set SLUG, then list its indexes with sizes."""
    from ..client import Client

    with Client(resolve_dsn(dsn)) as client:
        conn = client.conn
        if full:
            click.echo(conn.execute("SELECT mrl.create_full_index(%s, %s, %s)", (slug, m, ef_construction)).fetchone()[0])
        if binary:
            click.echo(conn.execute("SELECT mrl.add_binary_index(%s, %s, %s)", (slug, m, ef_construction)).fetchone()[0])
        if coarse_dim:
            click.echo(conn.execute("SELECT mrl.add_coarse_index(%s, %s, %s, %s)",
                                    (slug, coarse_dim, m, ef_construction)).fetchone()[0])
        for name, kind, dim, mm, _efc, size in conn.execute("SELECT * FROM mrl.search_indexes(%s)", (slug,)):
            click.echo(f"  {name:40s} {kind:7s} dim {dim:5d}  m {mm:3d}  {size / 2**20:8.1f} MiB")

@click.command("load-vectors")
@dsn_option
@click.argument("slug")
@click.option("--vectors", "vectors_file", type=click.Path(exists=True, dir_okay=False),
              help="float vectors, .npy (n x dims); with --ids.")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False),
              help="Text file, one source-row key per line, in the order of --vectors.")
@click.option("--jsonl", "jsonl_file", type=click.Path(exists=True, dir_okay=False),
              help='Or JSON Lines: {"id": key, "embedding": [...]} per line.')
def load_vectors(dsn, slug, vectors_file, ids_file, jsonl_file):
    """Store precomputed vectors for SLUG's rows instead of embedding them (bring your own vectors).

    The vectors must come from the set's model applied to each row's current text (with the model's document
    prefix). Rows whose text is empty or missing are skipped; loaded rows leave the queue."""
    from tqdm import tqdm

    from ..client import Client

    if jsonl_file and (vectors_file or ids_file):
        raise click.UsageError("give --jsonl, or --vectors with --ids, not both")
    if jsonl_file:
        ids, rows = [], []
        with open(jsonl_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        obj = json.loads(line)
                        ids.append(obj["id"])
                        rows.append(obj["embedding"])
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise PgmrlError(f'{jsonl_file}:{n}: expected {{"id": ..., "embedding": [...]}} ({exc})') from None
        try:
            vectors = np.asarray(rows, dtype=np.float32)
        except ValueError:
            raise PgmrlError(f"{jsonl_file}: the embeddings do not all have the same length") from None
    elif vectors_file and ids_file:
        vectors = np.load(vectors_file, mmap_mode="r")
        with open(ids_file, encoding="utf-8") as f:
            ids = [line.rstrip("\n") for line in f if line.strip()]
    else:
        raise click.UsageError("give --vectors and --ids, or --jsonl")
    if not np.isfinite(np.asarray(vectors, dtype=np.float32)).all():
        raise PgmrlError("the vectors contain NaN or infinite values")
    with Client(resolve_dsn(dsn)) as client, tqdm(total=len(ids), desc="vectors", unit="row") as bar:
        n = client.load_vectors(slug, ids, vectors, progress=bar)
    click.echo(f"stored {n} of {len(ids)} vectors in {slug}"
               + ("" if n == len(ids) else f" ({len(ids) - n} rows have no text or do not exist)"))
