#!/usr/bin/env python3
"""Builds the sample corpus that ships inside the package (used by `pgmrl quickstart`).

Takes the first N records of the shared Debian corpus (real package descriptions; the order there is already a
fixed shuffle) and writes them as gzipped JSONL: {"package", "summary", "description"}.

    python scripts/make_sample_corpus.py --source ../shared/data/debian-packages.jsonl --rows 2000
"""

import argparse
import gzip
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "pyext" / "pgmrl" / "embedded" / "data" / "debian-sample.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(Path(__file__).resolve().parents[2] / "shared/data/debian-packages.jsonl"))
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    n = 0
    # mtime=0: the same input gives a byte-identical file
    with open(args.source, encoding="utf-8") as src, open(args.out, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for line in src:
            rec = json.loads(line)
            if not rec["doc"].strip():
                continue
            out = {"package": rec["id"], "summary": rec["query"], "description": rec["doc"]}
            gz.write((json.dumps(out, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
            if n >= args.rows:
                break
    print(f"wrote {n} records to {args.out}")


if __name__ == "__main__":
    main()
