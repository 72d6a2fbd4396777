"""Copies the slice of the shared Debian corpus that the tests use into tests/data/, so a fresh clone runs every
test without ../shared:

    tests/data/debian-5200.jsonl.gz               the first 5,200 records ({"id", "query", "doc"} per line)
    tests/data/debian-5200.minilm-docs.f16.npy    MiniLM vectors of the first 3,000 documents (float16)
    tests/data/debian-5200.minilm-queries.f16.npy MiniLM vectors of the first 200 queries (float16)

Run from the repository root: python scripts/make_test_data.py [--shared ../shared/data]. The output is
deterministic (gzip without a timestamp), so re-running it gives no diff.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np

RECORDS, DOC_VECTORS, QUERY_VECTORS = 5200, 3000, 200
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    args = parser.parse_args()
    lines = []
    with open(args.shared / "debian-packages.jsonl", encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if len(lines) == RECORDS:
                break
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9, filename="") as gz:
        gz.write("".join(lines).encode("utf-8"))
    (args.out / f"debian-{RECORDS}.jsonl.gz").write_bytes(buf.getvalue())
    for kind, n in (("docs", DOC_VECTORS), ("queries", QUERY_VECTORS)):
        v = np.load(args.shared / f"debian-packages.minilm-{kind}.f16.npy", mmap_mode="r")[:n]
        np.save(args.out / f"debian-{RECORDS}.minilm-{kind}.f16.npy", np.ascontiguousarray(v, dtype=np.float16))
    print(f"wrote {RECORDS} records, {DOC_VECTORS} document and {QUERY_VECTORS} query vectors to {args.out}")


if __name__ == "__main__":
    main()
