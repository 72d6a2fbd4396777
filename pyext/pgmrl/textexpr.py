"""Client-side check of the text a set embeds, with a real SQL parser (sqlglot, PostgreSQL dialect).

Gives precise errors before anything reaches the database: one expression, no statements or subqueries, and
only columns the table has. The server repeats the essential checks (mrl_internal._text_expr) for SQL callers.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from .errors import PgmrlError


def validate(text_column: str, columns: list[str]) -> None:
    """Raises PgmrlError unless `text_column` is a column name or a single expression over `columns`."""
    if text_column is None or not text_column.strip():
        raise PgmrlError("text column is empty: name the column to embed, or give an expression "
                         "such as title || ' ' || body")
    if text_column in columns:
        return
    try:
        parsed = sqlglot.parse(f"SELECT {text_column}", read="postgres")
    except sqlglot.errors.SqlglotError as exc:
        raise PgmrlError(f"text expression {text_column!r} does not parse: {str(exc).splitlines()[0]}") from exc
    if len(parsed) != 1 or parsed[0] is None:
        raise PgmrlError(f"text expression {text_column!r} holds more than one statement: give one expression")
    select = parsed[0]
    if not isinstance(select, exp.Select) or len(select.expressions) != 1 or select.args.get("from_") \
            or select.args.get("from") or select.args.get("where"):
        raise PgmrlError(f"text expression {text_column!r} must be a single expression over the table's columns")
    expression = select.expressions[0]
    if isinstance(expression, exp.Alias):
        raise PgmrlError(f"text expression {text_column!r} has an alias: remove the AS part")
    for node in expression.walk():
        if isinstance(node, (exp.Select, exp.Subquery, exp.Query, exp.DML)):
            raise PgmrlError(f"text expression {text_column!r} contains a subquery or statement; "
                             f"only expressions over the table's own columns are allowed")
    known = set(columns) | {c.lower() for c in columns}
    for col in expression.find_all(exp.Column):
        name = col.name if col.this.args.get("quoted") else col.name.lower()
        if col.table:
            raise PgmrlError(f"text expression {text_column!r} refers to {col.sql()}: use bare column names "
                             f"of the source table")
        if name not in known:
            raise PgmrlError(f"text expression {text_column!r} uses unknown column {col.name!r}; "
                             f"the table has: {', '.join(columns)}")
