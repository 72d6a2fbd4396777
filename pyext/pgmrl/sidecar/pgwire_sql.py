"""The fixed query language of the PostgreSQL-protocol endpoint (pgwire.py): one real statement,

    SELECT embedding FROM embed('<config>', 'query' | 'document', '<text>')

(keywords in any case, standard SQL string literals with '' for a quote and a backslash taken literally, as with
standard_conforming_strings on; escape strings E'...' with PostgreSQL's backslash escapes; `$1`..`$n` in place of any literal over
the extended protocol, an optional `::text` after an argument, `*` for `embedding`), and what clients send on their
own (SET/RESET, SHOW of a reported parameter, BEGIN/COMMIT/ROLLBACK, DISCARD, DEALLOCATE, SELECT 1,
SELECT version(), an empty query), which are answered without effect. Anything else is a syntax error (42601)
naming the supported statement. Pure functions: no I/O, nothing to configure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .._version import __version__

TEXT_OID = 25
INT4_OID = 23
TEXT_LIKE_OIDS = frozenset({0, 18, 19, 25, 705, 1042, 1043})  # unknown, char, name, text, unknown, bpchar, varchar

SUPPORTED = ("this endpoint answers only SELECT embedding FROM embed('<config>', 'query' | 'document', '<text>') "
             "(or with $1, $2, $3 for the arguments), plus SET, SHOW, BEGIN/COMMIT/ROLLBACK, DISCARD, DEALLOCATE, "
             "SELECT 1 and SELECT version()")

SERVER_VERSION = f"16.0 (pgmrl {__version__} embedding endpoint)"
# reported to every client on connect (ParameterStatus) and answered by SHOW
PARAMETERS = {"server_version": SERVER_VERSION, "server_encoding": "UTF8", "client_encoding": "UTF8",
              "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC", "integer_datetimes": "on",
              "standard_conforming_strings": "on", "is_superuser": "off", "default_transaction_read_only": "on",
              "in_hot_standby": "off"}
UTF8_NAMES = frozenset({"utf8", "utf-8", "unicode", "sql_ascii"})  # SQL_ASCII: bytes pass through, as in PostgreSQL


class QueryError(Exception):
    """An error for the client: SQLSTATE, message, optional hint."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


def syntax_error(detail: str = "") -> QueryError:
    return QueryError("42601", f"{detail + ': ' if detail else ''}{SUPPORTED}")


@dataclass(frozen=True)
class Statement:
    """One classified statement. `kind`: embed, rows (fixed result), command (a tag only), empty, begin, commit,
    rollback, discard, deallocate. `args`: embed's three arguments, each a literal (str) or a parameter number."""

    kind: str
    tag: str = ""
    columns: tuple[tuple[str, int], ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    args: tuple[str | int, ...] = ()
    name: str | None = None  # DEALLOCATE's statement (None: ALL)
    nparams: int = 0


@dataclass
class Token:
    kind: str  # space, string, ident, param, word, number, op, other
    text: str
    value: str = field(default="")


_TOKENS = re.compile(r"""
      (?P<space>\s+|--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^']|'')*')
    | (?P<estring>[Ee]'(?:[^'\\]|''|\\.)*')
    | (?P<eopen>[Ee]')
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<param>\$[0-9]+)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<number>[0-9]+(?:\.[0-9]*)?)
    | (?P<op>::|[(),;*=.+\-])
    | (?P<open>['"]|/\*)
    | (?P<other>.)
""", re.X | re.S)


def tokenize(sql: str) -> list[Token]:
    out = []
    for m in _TOKENS.finditer(sql):
        kind, text = m.lastgroup or "other", m.group()
        if kind == "open":
            raise QueryError("42601", f"unterminated {'comment' if text == '/*' else 'quoted string'} in the query")
        if kind == "eopen":
            raise QueryError("42601", "unterminated quoted string in the query")
        if kind == "string":
            value = text[1:-1].replace("''", "'")
        elif kind == "estring":
            kind, value = "string", unescape(text[2:-1])
        elif kind == "ident":
            value = text[1:-1].replace('""', '"')
        elif kind == "word":
            value = text.lower()
        else:
            value = text
        out.append(Token(kind, text, value))
    return out


_ESCAPES = re.compile(r"''|\\(?:[0-7]{1,3}|x[0-9A-Fa-f]{1,2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[uU]|.)", re.S)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def unescape(body: str) -> str:
    """The value of an escape string E'<body>' as PostgreSQL reads it: '' and \\' a quote; \\b \\f \\n \\r \\t;
    \\ooo (octal) and \\xhh (hex) bytes, which together must be UTF-8; \\uXXXX and \\UXXXXXXXX code points (surrogate
    pairs joined); any other character after a backslash is itself."""
    out = bytearray()
    pos = 0
    high: int | None = None  # a high surrogate waiting for its low half
    for m in _ESCAPES.finditer(body):
        if high is not None and (m.start() > pos or m.group()[:2] not in ("\\u", "\\U")):
            raise QueryError("22P02", "invalid Unicode surrogate pair")
        out += body[pos:m.start()].encode()
        pos = m.end()
        esc = m.group()
        if esc == "''":
            out += b"'"
            continue
        c = esc[1]
        if c in "01234567":
            out.append(int(esc[1:], 8) & 0xFF)
        elif c == "x" and len(esc) > 2:
            out.append(int(esc[2:], 16))
        elif c in "uU":
            if len(esc) == 2:
                raise QueryError("22025", "invalid Unicode escape", "Unicode escapes must be \\uXXXX or \\UXXXXXXXX.")
            code = int(esc[2:], 16)
            if 0xD800 <= code <= 0xDBFF and high is None:
                high = code
                continue
            if high is not None:
                if not 0xDC00 <= code <= 0xDFFF:
                    raise QueryError("22P02", "invalid Unicode surrogate pair")
                code, high = 0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00), None
            elif 0xDC00 <= code <= 0xDFFF or code > 0x10FFFF:
                raise QueryError("22P02", "invalid Unicode surrogate pair" if code <= 0xDFFF else
                                 "invalid Unicode escape value")
            if code == 0:
                raise QueryError("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
            out += chr(code).encode()
        else:
            out += _SIMPLE_ESCAPES.get(c, c).encode()
    if high is not None:
        raise QueryError("22P02", "invalid Unicode surrogate pair")
    out += body[pos:].encode()
    if 0 in out:
        raise QueryError("22021", 'invalid byte sequence for encoding "UTF8": 0x00')
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError("22021", 'invalid byte sequence for encoding "UTF8"') from None


def split(sql: str) -> list[list[Token]]:
    """The statements of a simple-protocol query string (split at top-level semicolons), spaces dropped; a query
    string of only spaces and semicolons gives []."""
    statements: list[list[Token]] = [[]]
    for tok in tokenize(sql):
        if tok.kind == "op" and tok.text == ";":
            statements.append([])
        elif tok.kind != "space":
            statements[-1].append(tok)
    return [s for s in statements if s]


def classify(tokens: list[Token]) -> Statement:
    """What a statement is; QueryError 42601 for anything outside the language."""
    if not tokens:
        return Statement("empty")
    words = [t.value if t.kind == "word" else None for t in tokens]
    first = words[0]
    if first in ("set", "reset"):
        return _set(tokens, first)
    if first == "show":
        return _show(tokens)
    if first in ("begin", "start") and (first == "begin" or words[1:2] == ["transaction"]):
        return Statement("begin", "BEGIN" if first == "begin" else "START TRANSACTION")
    if first in ("commit", "end") and all(w in ("work", "transaction") for w in words[1:]):
        return Statement("commit", "COMMIT")
    if first in ("rollback", "abort") and all(w in ("work", "transaction") for w in words[1:]):
        return Statement("rollback", "ROLLBACK")
    if first == "discard" and len(tokens) == 2 and words[1] in ("all", "plans", "sequences", "temp", "temporary"):
        return Statement("discard", f"DISCARD {'TEMP' if words[1] == 'temporary' else str(words[1]).upper()}")
    if first == "deallocate":
        return _deallocate(tokens)
    if first == "select":
        return _select(tokens)
    raise syntax_error()


def _set(tokens: list[Token], first: str) -> Statement:
    names = [t.value for t in tokens[1:3] if t.kind in ("word", "ident")]
    if names and names[0] in ("session", "local"):
        names = names[1:]
    if first == "set" and names[:1] in (["client_encoding"], ["names"]):
        values = [t.value.lower() for t in tokens[2:] if t.kind in ("string", "word", "ident") and t.value != "to"]
        if values and values[-1] not in UTF8_NAMES | {"default"}:
            raise QueryError("0A000", f"this endpoint speaks UTF8 only, not {values[-1]!r}",
                             "connect with client_encoding=UTF8")
    return Statement("command", first.upper())


def _show(tokens: list[Token]) -> Statement:
    if len(tokens) != 2 or tokens[1].kind not in ("word", "ident"):
        raise syntax_error("SHOW takes one parameter name")
    wanted = tokens[1].value.lower()
    for name, value in PARAMETERS.items():
        if name.lower() == wanted:
            return Statement("rows", "SHOW", ((wanted, TEXT_OID),), ((value,),))
    if wanted in ("transaction_isolation", "default_transaction_isolation"):
        return Statement("rows", "SHOW", ((wanted, TEXT_OID),), (("read committed",),))
    raise QueryError("42704", f'unrecognized configuration parameter "{tokens[1].value}"')


def _deallocate(tokens: list[Token]) -> Statement:
    rest = tokens[1:]
    if rest and rest[0].kind == "word" and rest[0].value == "prepare":
        rest = rest[1:]
    if len(rest) == 1 and rest[0].kind == "word" and rest[0].value == "all":
        return Statement("deallocate", "DEALLOCATE ALL")
    if len(rest) == 1 and rest[0].kind in ("word", "ident"):
        return Statement("deallocate", "DEALLOCATE", name=rest[0].value if rest[0].kind == "ident" else rest[0].text)
    raise syntax_error("DEALLOCATE takes a statement name or ALL")


def _select(tokens: list[Token]) -> Statement:
    shape = [(t.kind, t.value) for t in tokens]
    if len(shape) == 2 and shape[1][0] == "number" and shape[1][1].isdigit() and len(shape[1][1]) < 10:
        return Statement("rows", "SELECT 1", (("?column?", INT4_OID),), ((str(int(shape[1][1])),),))
    if shape[1:] in ([("word", "version"), ("op", "("), ("op", ")")],
                     [("word", "pg_catalog"), ("op", "."), ("word", "version"), ("op", "("), ("op", ")")]):
        return Statement("rows", "SELECT 1", (("version", TEXT_OID),), ((f"PostgreSQL {SERVER_VERSION}",),))
    return _embed(tokens)


def _embed(tokens: list[Token]) -> Statement:
    head = [(t.kind, t.value) for t in tokens[:6]]
    if (len(tokens) < 6 or head[1] not in (("word", "embedding"), ("ident", "embedding"), ("op", "*"))
            or head[2:5] != [("word", "from"), ("word", "embed"), ("op", "(")]):
        raise syntax_error()
    args: list[str | int] = []
    rest = tokens[5:]
    while True:
        arg, rest = _argument(rest)
        args.append(arg)
        if not rest or rest[0].kind != "op" or rest[0].text not in (",", ")"):
            raise syntax_error("embed() takes three string arguments")
        if rest[0].text == ")":
            rest = rest[1:]
            break
        rest = rest[1:]
    if rest:
        raise syntax_error(f"unexpected {rest[0].text!r} after embed(...)")
    if len(args) != 3:
        raise QueryError("42883", f"embed() takes three arguments (config, kind, text), not {len(args)}",
                         SUPPORTED)
    nparams = max((a for a in args if isinstance(a, int)), default=0)
    return Statement("embed", "SELECT 1", (("embedding", TEXT_OID),), args=tuple(args), nparams=nparams)


def _argument(tokens: list[Token]) -> tuple[str | int, list[Token]]:
    """One argument of embed(): a string literal or $n, optionally cast to text or varchar."""
    if not tokens or tokens[0].kind not in ("string", "param"):
        raise syntax_error("embed() takes three string arguments")
    tok, rest = tokens[0], tokens[1:]
    arg: str | int = tok.value
    if tok.kind == "param":
        arg = int(tok.text[1:])
        if not 1 <= arg <= 3:
            raise QueryError("42P02", f"there is no parameter {tok.text}")
    if len(rest) >= 2 and rest[0].text == "::" and rest[1].kind == "word" and rest[1].value in ("text", "varchar"):
        rest = rest[2:]
    return arg, rest
