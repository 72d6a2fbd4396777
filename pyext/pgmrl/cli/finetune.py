"""CLI: pgmrl finetune generate | train | list."""

from __future__ import annotations

import json
import os

import click

from ._common import dsn_option, resolve_dsn


@click.group()
def finetune():
    """Fine-tune an embedding model on a set's own documents with MatryoshkaLoss.

    Best with real query-document pairs from the table itself (a title, subject or summary column:
    `generate --query-column`); otherwise queries are generated from the documents. The guide: fine-tuning pays when
    the baseline Recall@10 is below 60%, or when the held-out comparison shows a win at the set's coarse dimension."""

@finetune.command("generate")
@dsn_option
@click.option("--set", "slug", required=True, help="Embedding set whose documents are used.")
@click.option("--name", required=True, help="Dataset name (lower-case letters, digits, . _ -).")
@click.option("--query-column", envvar="PGMRL_QUERY_COLUMN",
              help="Column of the set's source table that holds each row's query (a title, subject, summary): "
                   "real pairs, one per row. Pairs whose query is empty, the document's own beginning, or shared by "
                   "several rows are dropped.")
@click.option("--query-expr", help="Like --query-column, an expression over the source's columns (checked like a "
                                    "set's text expression), e.g. \"coalesce(subject, '')\".")
@click.option("--max-docs-per-query", default=1, show_default=True,
              help="With --query-column/--query-expr: drop a query that more rows than this share.")
@click.option("--queries-per-doc", default=4, show_default=True,
              help="Queries generated for each document (without --query-column).")
@click.option("--validation-share", default=0.2, show_default=True, help="Share of documents held out.")
@click.option("--llm-url", envvar="PGMRL_LLM_URL",
              help="OpenAI-compatible base URL (…/v1) whose chat model writes the queries [env PGMRL_LLM_URL]. "
                   "Default: queries cut from the documents (no LLM).")
@click.option("--llm-model", envvar="PGMRL_LLM_MODEL", default="gpt-4o-mini", show_default=True,
              help="Chat model that writes the queries, with --llm-url [env PGMRL_LLM_MODEL].")
@click.option("--replace", is_flag=True, help="Replace an existing dataset of that name.")
def generate(dsn, slug, name, query_column, query_expr, max_docs_per_query, queries_per_doc, validation_share,
             llm_url, llm_model, replace):
    """Make query-document pairs from the set's documents into the database (split by document): real pairs from
    --query-column / --query-expr, else queries generated from the documents."""
    from tqdm import tqdm

    from ..finetune.run import generate as run

    llm = None
    if llm_url:
        llm = {"url": llm_url, "model": llm_model,
               "api_key": os.environ.get("PGMRL_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY")}
    with tqdm(desc="documents", unit="doc") as bar:
        out = run(resolve_dsn(dsn), slug, name, queries_per_doc, validation_share, llm, replace, bar,
                  query_column=query_column, query_expr=query_expr, max_docs_per_query=max_docs_per_query)
    s = out["stats"]
    click.echo(f"dataset {name}: {s['pairs']} pairs from {s['documents']} documents "
               f"({s['train']} train, {s['validation']} validation); by method: "
               + ", ".join(f"{k} {v}" for k, v in sorted(s["by_method"].items())))
    if "dropped" in s:
        click.echo("dropped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in s["dropped"].items()))

@finetune.command("train")
@dsn_option
@click.option("--dataset", required=True, help="Dataset made by `pgmrl finetune generate`.")
@click.option("--base", default="all-minilm-l6-v2", show_default=True, help="Embedding config to start from.")
@click.option("--matryoshka-dims", default="384,256,128,64,32", show_default=True,
              help="Dimensions MatryoshkaLoss trains, the model's full size first.")
@click.option("--name", help="Name of the new embedding config (default: BASE-DATASET).")
@click.option("--output", type=click.Path(file_okay=False), help="Model folder (default: $PGMRL_MODEL_DIR/NAME).")
@click.option("--epochs", default=1, show_default=True, help="Passes over the training pairs.")
@click.option("--batch-size", default=32, show_default=True, help="Pairs per step (in-batch negatives).")
@click.option("--lr", default=5e-5, show_default=True, help="Peak learning rate (AdamW, warm-up then decay).")
@click.option("--max-seq-length", default=128, show_default=True, help="Tokens per document while training.")
@click.option("--max-pairs", type=int, help="Train on at most this many pairs (whole documents).")
@click.option("--device", envvar="PGMRL_DEVICE", help="cpu, cuda, ... (default: automatic).")
@click.option("--hard-negatives", default=1, show_default=True,
              help="Documents mined from the set per pair that its model ranks high but are not the answer "
                   "(near-duplicates and likely-relevant ones skipped); 0: in-batch negatives only.")
@click.option("--force", is_flag=True, help="Train even when the baseline Recall@10 is at least 60% on generated pairs.")
@click.option("--skip-eval", is_flag=True, help="Do not compare with the base model on the held-out pairs.")
@click.option("--eval-docs", default=5000, show_default=True,
              help="Documents the held-out queries are searched in (the validation documents + a sample).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON at the end.")
def train(dsn, dataset, base, matryoshka_dims, name, output, epochs, batch_size, lr, max_seq_length, max_pairs,
          device, hard_negatives, force, skip_eval, eval_docs, as_json):
    """Fine-tune BASE with MatryoshkaLoss over MultipleNegativesRankingLoss (with mined hard negatives) on the
    dataset's train pairs, save it, register it as an MRL embedding config, then compare it on the held-out pairs
    with the base model (raw prefix and rotation) per dimension, and say whether it beat the rotation at the set's
    coarse dimension. Switching the set is suggested only then."""
    from tqdm import tqdm

    from ..finetune.report import describe, heldout_report
    from ..finetune.run import train as run

    try:
        dims = tuple(int(x) for x in matryoshka_dims.split(","))
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers", param_hint="--matryoshka-dims") from None
    dsn = resolve_dsn(dsn)
    if hard_negatives < 0:
        raise click.BadParameter("0 or more", param_hint="--hard-negatives")
    out = run(dsn, dataset, base, dims, name, output, epochs, batch_size, lr, max_seq_length, max_pairs, force,
              device, echo=click.echo, progress_factory=lambda n: tqdm(total=n, desc="training", unit="step"),
              hard_negatives=hard_negatives)
    if not skip_eval:
        click.echo(f"comparing with {base} on the held-out pairs ...")
        report = heldout_report(dsn, dataset, out["config"], base, dims, max_docs=eval_docs)
        out["heldout"] = report
        for line in describe(report, out["set"], out["config"]):
            click.echo(line)
    if as_json:
        click.echo(json.dumps(out, indent=2))

@finetune.command("list")
@dsn_option
def list_(dsn):
    """The fine-tuning datasets in the database."""
    from ..db import connect

    with connect(resolve_dsn(dsn), autocommit=True) as conn:
        for r in conn.execute("SELECT name, set_slug, train_pairs, validation_pairs, documents, created_at "
                              "FROM mrl.finetune_summary ORDER BY created_at"):
            click.echo(f"{r[0]:24s} set {r[1]:16s} {r[2]:6d} train {r[3]:6d} validation pairs, {r[4]} documents, "
                       f"{r[5]:%Y-%m-%d %H:%M}")
