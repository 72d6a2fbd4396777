"""Cutting long texts into chunks that the model reads whole.

A set's `chunking` (mrl.embedding_sets.chunking) is NULL (one vector per row, from the beginning of its text) or
{"method": "tokens" | "paragraphs" | "sections", "size": tokens, "overlap": tokens}. Sizes are counted in the
model's own tokenizer, and a chunk never holds more tokens than the model reads: the document prefix and the special
tokens are counted too. "tokens" slides a window of `size` tokens, `overlap` of them shared with the previous chunk;
"paragraphs" packs whole paragraphs, else whole sentences, into chunks of at most `size` tokens and cuts only a
sentence longer than that into token windows; "sections" does the same but starts a chunk at every paragraph (a
paragraph shorter than a quarter of `size`, such as a heading, joins the next one), so that no chunk mixes the end
of one topic with the start of the next. Offsets are character positions in the text: [start, end).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import PgmrlError

# A token's character span in the text
Span = tuple[int, int]

METHODS = ("tokens", "paragraphs", "sections")

_PARAGRAPH = re.compile(r"\n\s*\n|\r\n\s*\r\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n")


@dataclass(frozen=True)
class Chunking:
    method: str
    size: int
    overlap: int

    @classmethod
    def from_json(cls, value: dict | None) -> Chunking | None:
        if not value:
            return None
        method = value.get("method")
        if method not in METHODS:
            raise PgmrlError(f"unknown chunking method {method!r}")
        size, overlap = int(value.get("size", 256)), int(value.get("overlap", 0))
        if size < 1 or not 0 <= overlap < size:
            raise PgmrlError(f"invalid chunking {value!r}")
        return cls(method, size, overlap)


@dataclass(frozen=True)
class Chunk:
    number: int
    start: int
    end: int
    text: str


def split(text: str, chunking: Chunking, spans: Sequence[Span], budget: int) -> list[Chunk]:
    """The chunks of `text` (whose tokens are `spans`): token windows, or packed paragraphs/sentences (each
    paragraph starting a chunk for "sections") of at most min(size, budget) tokens."""
    size = max(1, min(chunking.size, budget))
    overlap = min(chunking.overlap, size // 2)
    if not spans:
        return [Chunk(0, 0, len(text), text)] if text.strip() else []
    if chunking.method == "tokens":
        ranges = _windows(spans, 0, len(spans), size, overlap)
    else:
        ranges = _packed(text, spans, size, overlap, sections=chunking.method == "sections")
    return [Chunk(i, a, b, text[a:b]) for i, (a, b) in enumerate(ranges)]


def _windows(spans: Sequence[Span], first: int, last: int, size: int, overlap: int) -> list[Span]:
    """Character ranges of windows of `size` tokens over spans[first:last], each sharing `overlap` with the last."""
    out: list[Span] = []
    step = size - overlap
    i = first
    while i < last:
        j = min(i + size, last)
        out.append((spans[i][0], spans[j - 1][1]))
        if j == last:
            break
        i += step
    return out


def _units(text: str) -> list[tuple[Span, bool]]:
    """Paragraphs, each cut into sentences: (start, end) character ranges without surrounding blanks, each with
    whether it begins a paragraph."""
    out: list[tuple[Span, bool]] = []
    for para in _split_ranges(text, _PARAGRAPH, 0, len(text)):
        out.extend((r, i == 0) for i, r in enumerate(_split_ranges(text, _SENTENCE_END, *para)))
    return out


def _split_ranges(text: str, sep: re.Pattern[str], start: int, end: int) -> list[Span]:
    out: list[Span] = []
    pos = start
    for m in sep.finditer(text, start, end):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, end))
    stripped = []
    for a, b in out:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            stripped.append((a, b))
    return stripped


def _packed(text: str, spans: Sequence[Span], size: int, overlap: int, sections: bool = False) -> list[Span]:
    """Whole sentences packed into chunks of at most `size` tokens; a paragraph break ends a chunk when the next
    paragraph does not fit; a sentence longer than `size` becomes token windows. With `sections` every paragraph
    starts a chunk, except after whole paragraphs of fewer than size / 4 tokens (a heading joins its section)."""
    starts = [s[0] for s in spans]

    def tokens_of(a: int, b: int) -> tuple[int, int]:  # token index range inside [a, b)
        return bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)

    out: list[Span] = []
    cur: Span | None = None
    cur_tokens = 0
    cur_whole = False  # cur holds whole paragraphs only (it began at a paragraph's start)
    for (a, b), starts_paragraph in _units(text):
        i, j = tokens_of(a, b)
        n = j - i
        if sections and starts_paragraph and cur is not None and not (cur_whole and cur_tokens < size // 4):
            out.append(cur)
            cur, cur_tokens = None, 0
        if n > size:  # a sentence longer than a chunk: token windows
            if cur is not None:
                out.append(cur)
                cur, cur_tokens = None, 0
            out.extend(_windows(spans, i, j, size, overlap))
            continue
        if cur is not None and cur_tokens + n <= size:
            cur, cur_tokens = (cur[0], b), cur_tokens + n
        else:
            if cur is not None:
                out.append(cur)
            cur, cur_tokens, cur_whole = (a, b), n, starts_paragraph
    if cur is not None:
        out.append(cur)
    return out


def regex_tokenize(text: str) -> list[Span]:
    """An approximate tokenizer for models whose tokenizer is not at hand (remote providers): words and single
    punctuation marks, long words counted as one token per 4 characters."""
    out: list[Span] = []
    for m in re.finditer(r"\w+|[^\w\s]", text):
        a, b = m.span()
        out.extend((p, min(p + 4, b)) for p in range(a, b, 4))
    return out


def fit(text: str, chunks: list[Chunk], spans: Sequence[Span], count: Callable[[list[str]], list[int]],
        budget: int) -> list[Chunk]:
    """Chunks re-counted as the model will read them (a chunk that starts inside a word can tokenize longer than
    its share of the whole text): one over the budget loses tokens at its end until it fits."""
    ends = [s[1] for s in spans]
    out = list(chunks)
    todo = list(range(len(out)))
    while todo:
        counts = count([out[i].text for i in todo])
        again = []
        for i, n in zip(todo, counts):
            if n <= budget:
                continue
            c = out[i]
            k = bisect.bisect_right(ends, c.end) - 1 - (n - budget)  # last token to keep
            end = ends[k] if k >= 0 and ends[k] > c.start else c.start + max(1, (c.end - c.start) * budget // n)
            out[i] = Chunk(c.number, c.start, end, text[c.start:end])
            again.append(i)
        todo = again
    return out
