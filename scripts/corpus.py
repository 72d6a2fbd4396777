"""What the scripts share: the Debian corpus in ../shared/data and a throw-away embedded server."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pgmrl.embedded.server import EmbeddedServer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def records(n: int, data: Path = DATA) -> list[dict]:
    """The first n records: {"id": package, "query": short description, "doc": long description}."""
    out = []
    with open(Path(data) / "debian-packages.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def vectors(kind: str, n: int, data: Path = DATA) -> np.ndarray:
    """Precomputed MiniLM vectors of the first n docs or queries (kind 'docs' or 'queries'), float32."""
    return np.load(Path(data) / f"debian-packages.minilm-{kind}.f16.npy", mmap_mode="r")[:n].astype(np.float32)


@contextlib.contextmanager
def database(dsn: str | None, prefix: str):
    """Yields dsn, or the DSN of a temporary embedded server (stopped afterwards) when dsn is None."""
    if dsn:
        yield dsn
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o755)  # the server may run as another OS user
    server = EmbeddedServer(Path(tmp) / "pgdata")
    try:
        yield server.start()
    finally:
        server.stop()
