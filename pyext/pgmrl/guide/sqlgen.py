"""Generates the SQL that seeds the guide into the database from catalogue.json: the built-in rows of
mrl.embedding_configs (sql/functions/070_configs.sql) and mrl.recommend_config (sql/functions/075_recommend.sql).

    python -m pgmrl.guide.sqlgen           # rewrite both files
    python -m pgmrl.guide.sqlgen --check   # exit 1 if they differ from what catalogue.json gives (CI, tests)
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from .catalogue import data

HEADER = "-- GENERATED from pyext/pgmrl/guide/catalogue.json by `python -m pgmrl.guide.sqlgen`: edit that file, not this.\n"
CONFIG_COLUMNS = ["name", "model", "provider", "dims", "supports_mrl", "matryoshka_dims", "default_truncate_dim",
                  "query_prefix", "document_prefix", "max_seq_length", "params_millions", "best_for", "aliases"]


def literal(value: Any) -> str:
    """A SQL literal for a catalogue value (text, number, bool, None, list of int or text)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return literal("{" + ",".join(str(v) for v in value) + "}")
    text = str(value)
    if "\\" in text or "\n" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n") + "'"
    return "'" + text.replace("'", "''") + "'"


def configs_sql() -> str:
    rows = [",\n     ".join([", ".join(literal(m[c]) for c in CONFIG_COLUMNS[:7]),
                             ", ".join(literal(m[c]) for c in CONFIG_COLUMNS[7:])]) + ", true"
            for m in data()["models"]]
    updates = ",\n       ".join(f"{c} = EXCLUDED.{c}" for c in CONFIG_COLUMNS[1:])
    return (HEADER
            + "-- The models of the embedding model selection guide. Re-running the install refreshes these rows;\n"
              "-- configs that users register (builtin = false) are never touched.\n"
              "INSERT INTO mrl.embedding_configs AS c\n"
              f"       ({', '.join(CONFIG_COLUMNS[:7])},\n        {', '.join(CONFIG_COLUMNS[7:])}, builtin)\nVALUES\n"
            + ",\n".join(f"    ({r})" for r in rows)
            + f"\nON CONFLICT (name) DO UPDATE\n   SET {updates}\n WHERE c.builtin;\n")


def recommend_sql() -> str:
    questions = data()["questions"]
    rules = []
    for rank, r in enumerate(data()["decision_tree"], 1):
        applies = " AND ".join(f"coalesce({q}, false)" for q in r["when"]) or "true"
        rules.append(f"        ({rank}, {applies}, {literal(r['config'])}, {literal(r['alternative'])}::text, "
                     f"{literal(r['truncate_dim'])}::int, {literal(r['fine_tune'])},\n         {literal(r['reason'])})")
    args = ",\n".join(f"    {q} bool DEFAULT false" for q in questions)
    return (HEADER
            + "-- The model selection guide's decision tree (the same rules as `pgmrl recommend`): the first rule\n"
              "-- whose questions are all answered yes.\n"
              f"CREATE OR REPLACE FUNCTION mrl.recommend_config(\n{args})\n"
              "RETURNS TABLE (config text, alternative text, truncate_dim int, fine_tune bool, reason text)\n"
              "LANGUAGE sql IMMUTABLE\nSET search_path = pg_catalog, pg_temp\nAS $fn$\n"
              "    SELECT t.config, t.alternative, t.truncate_dim, t.fine_tune, t.reason FROM (VALUES\n"
            + ",\n".join(rules)
            + "\n    ) t(rank, applies, config, alternative, truncate_dim, fine_tune, reason)\n"
              "    WHERE t.applies ORDER BY t.rank LIMIT 1\n$fn$;\n")


def generated() -> dict[str, str]:
    """File name in sql/functions -> its generated text."""
    return {"070_configs.sql": configs_sql(), "075_recommend.sql": recommend_sql()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    parser.add_argument("--out", type=Path, help="folder to write (default: the package's sql/functions)")
    args = parser.parse_args(argv)
    folder = args.out or Path(str(resources.files("pgmrl.schema") / "sql" / "functions"))
    stale = []
    for name, text in generated().items():
        path = folder / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date with catalogue.json: {', '.join(stale)} (run python -m pgmrl.guide.sqlgen)",
              file=sys.stderr)
        return 1
    print("up to date with catalogue.json" if args.check else f"wrote {', '.join(generated())} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
