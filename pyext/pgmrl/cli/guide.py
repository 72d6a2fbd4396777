"""CLI commands for choosing a model: models, recommend, storage (the model selection guide)."""

from __future__ import annotations

import json
from typing import Any

import click
import psycopg

from .. import guide
from ..errors import PgmrlError
from ._common import dsn_option, resolve_dsn


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:6.2f} GB"


@click.command()
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(dsn, as_json):
    """The embedding configs: parameters, dimensions, Matryoshka dimensions, what each is best for, and
    whether it can run here (a local model folder, the bundled model, or a remote provider)."""
    from ..embedding import EmbeddingConfig, resolve_local_model

    rows: list[dict[str, Any]] = []
    try:
        from ..db import connect

        with connect(resolve_dsn(dsn), autocommit=True) as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            rows = cur.execute("SELECT name, model, provider, dims, matryoshka_dims, params_millions, best_for, "
                               "endpoint FROM mrl.embedding_configs ORDER BY builtin DESC, params_millions, name"
                               ).fetchall()
    except (PgmrlError, psycopg.Error) as exc:  # no database: the built-in catalogue
        click.echo(f"(no database: {str(exc).splitlines()[0]}; showing the built-in catalogue)", err=True)
        from ..embedding import BUNDLED_MODEL

        for m in guide.CATALOGUE.values():
            rows.append({"name": m.name, "model": BUNDLED_MODEL if m.name == "all-minilm-l6-v2" else m.name,
                         "provider": "sentence-transformers", "dims": m.dims, "matryoshka_dims": m.mrl_dims,
                         "params_millions": m.params_millions, "best_for": m.best_for, "endpoint": None})
    for r in rows:
        if r["provider"] != "sentence-transformers":
            r["available"] = f"remote:{r['provider']}"
            continue
        try:
            resolve_local_model(EmbeddingConfig(r["name"], r["model"], r["provider"], r["dims"]))
            r["available"] = "yes"
        except PgmrlError:
            r["available"] = "no"
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=float))
        return
    click.echo(f"{'config':30s} {'params':>7s} {'dims':>5s}  {'MRL dims':20s} {'here':13s} best for")
    for r in rows:
        mrl = ",".join(map(str, r["matryoshka_dims"])) if r["matryoshka_dims"] else "-"
        params = f"{float(r['params_millions']):.0f}M" if r["params_millions"] is not None else "?"
        click.echo(f"{r['name']:30s} {params:>7s} {r['dims']:5d}  {mrl:20s} {r['available']:13s} "
                   f"{r['best_for'] or ''}")
    if any(r["available"] == "no" for r in rows):
        click.echo("\nhere = no: the model is not on this machine. Download it where a network is available and put "
                   "it in $PGMRL_MODEL_DIR/<config>, or serve it with Ollama / an OpenAI-compatible endpoint and "
                   "register a config with provider 'ollama' or 'openai'.")

@click.command()
@click.option("--llm-rerank", is_flag=True, help="An LLM re-ranks the retrieved candidates.")
@click.option("--storage", is_flag=True, help="Storage / memory per vector matters.")
@click.option("--domain", is_flag=True, help="Domain-specific vocabulary (legal, medical, internal jargon).")
@click.option("--multilingual", is_flag=True, help="Texts in several languages, or CJK.")
@click.option("--code", is_flag=True, help="Searching source code.")
@click.option("--speed", is_flag=True, help="Prefer the faster model where the guide offers one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def recommend(llm_rerank, storage, domain, multilingual, code, speed, as_json):
    """Which embedding model to use, following the model selection guide's decision tree (the same answer as
    SELECT * FROM mrl.recommend_config(...) and GET /api/v1/embedding-configs/recommend)."""
    r = guide.recommend(llm_rerank, storage, domain, multilingual, code, speed)
    if as_json:
        click.echo(json.dumps(r.__dict__, indent=2))
        return
    m = guide.lookup(r.config)
    click.echo(f"use: {r.config}" + (f" (truncate_dim {r.truncate_dim})" if r.truncate_dim else ""))
    click.echo(f"why: {r.reason}")
    if r.alternative:
        click.echo(f"alternative: {r.alternative}")
    if r.fine_tune:
        click.echo("then: `pgmrl finetune generate` pairs from your set (real ones with --query-column when the "
                   "table has titles or summaries), and `pgmrl finetune train`: it trains when the baseline "
                   "Recall@10 is below 60% (or, on real pairs, as a trial) and switches only on a measured win")
    if m:
        dims = r.truncate_dim or m.dims
        click.echo(f"storage per 1M documents: {guide.guide_gb(m.dims, 1_000_000):.1f} GB full"
                   + (f", {guide.guide_gb(dims, 1_000_000):.1f} GB at {dims} dims" if r.truncate_dim else ""))

@click.command()
@dsn_option
@click.option("--model", help="Config name (or alias), e.g. nomic-embed-text-v1.5.")
@click.option("--dims", type=int, help="Dimensions of a model not in the catalogue.")
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Rows (documents) to size for.")
@click.option("--truncate-dim", type=int, help="Coarse (truncated) dimension.")
@click.option("--m", default=16, show_default=True, help="HNSW neighbours per node for the index estimate.")
@click.option("--full-type", type=click.Choice(["halfvec", "vector"]), default="halfvec", show_default=True,
              help="How the set keeps its full vectors (create-set --full-type).")
@click.option("--set", "slug", help="Report the measured sizes of an existing set instead.")
def storage(dsn, model, dims, rows, truncate_dim, m, full_type, slug):
    """Storage per model and row count: the guide's float32 figure, and what pgmrl actually stores (full
    vector, halfvec coarse vector, HNSW index estimates). With --set, sizes measured in PostgreSQL."""
    if slug:
        _measured(resolve_dsn(dsn), slug)
        return
    if not model and not dims:
        raise click.UsageError("give --model (or --dims), or --set")
    info = guide.lookup(model) if model else None
    if model and not info and not dims:
        raise PgmrlError(f"unknown model {model!r}; known: {', '.join(guide.CATALOGUE)} (or give --dims)")
    if dims:
        d = dims
    else:
        assert info is not None  # without --dims, --model names a known model (checked above)
        d = info.dims
    if rows <= 0:
        raise click.BadParameter("must be positive", param_hint="--rows")
    if truncate_dim is not None and not 0 < truncate_dim < d:
        raise click.BadParameter(f"must be between 1 and {d - 1}", param_hint="--truncate-dim")
    if info and info.mrl_dims and truncate_dim and truncate_dim not in info.mrl_dims:
        click.echo(f"note: {info.name} was trained for {', '.join(map(str, info.mrl_dims))} dims; pgmrl refuses "
                   f"other prefixes", err=True)
    name = info.name if info else model or f"{d}-dim model"
    click.echo(f"{name}: {d} dims, {rows:,} rows")
    click.echo(f"guide (float32 vectors): {guide.guide_gb(d, rows):.1f} GB full"
               + (f", {guide.guide_gb(truncate_dim, rows):.1f} GB at {truncate_dim} dims" if truncate_dim else ""))
    click.echo("what pgmrl stores (decimal GB):")
    parts = guide.layout(d, rows, truncate_dim, m, full_type)
    for label, size in parts:
        click.echo(f"  {label:48s} {_gb(size)}")
    core = sum(size for label, size in parts if not label.startswith("optional"))
    click.echo(f"  {'total (without the optional indexes)':48s} {_gb(core)}")
    if truncate_dim:
        click.echo(f"  the index searched in memory is the coarse one: {_gb(parts[2][1]).strip()} instead of "
                   f"{_gb(parts[-1][1]).strip()} for a full-dimension HNSW")


def _measured(dsn: str, slug: str) -> None:
    from ..db import connect, one, scalar

    with connect(dsn, autocommit=True) as conn:
        vt, dims, tdim, full_type = one(conn.execute(
            "SELECT (s).vectors_table::text, (s).dims, (s).truncate_dim, (s).full_type "
            "FROM (SELECT mrl_internal._set(%s) AS s) x", (slug,)))
        n, emb, coarse = one(conn.execute(f"SELECT count(*), coalesce(sum(pg_column_size(embedding)), 0), "
                                          f"coalesce(sum(pg_column_size(coarse)), 0) FROM {vt}"))
        table = scalar(conn.execute("SELECT pg_table_size(%s::regclass)", (vt,)))
        click.echo(f"set {slug}: {n:,} vectors of {dims} dims" + (f", coarse {tdim} dims" if tdim else ""))
        click.echo(f"  {'table (heap, measured)':48s} {_gb(table)}")
        click.echo(f"  {'  of which embedding values':48s} {_gb(emb)}")
        click.echo(f"  {'  of which coarse values':48s} {_gb(coarse)}")
        for name, kind, dim, m, _efc, size in conn.execute("SELECT * FROM mrl.search_indexes(%s)", (slug,)):
            click.echo(f"  {f'index {name} ({kind}, {dim} dims, m {m})':48s} {_gb(size)}")
        if n:
            est = guide.layout(dims, n, tdim, full_type=full_type)
            click.echo(f"  (estimate for the same rows: embedding {_gb(est[0][1]).strip()}"
                       + (f", coarse index {_gb(est[2][1]).strip()}" if tdim else "") + ")")
