"""Counters the worker feeds and the sidecar's /metrics renders (Prometheus text format)."""

from __future__ import annotations

import threading


class Metrics:
    """Counters shared by the worker and the HTTP server of one process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows_embedded = 0
        self.batches = 0
        self.batch_seconds = 0.0
        self.errors = 0
        self.http_embeds = 0

    def batch(self, rows: int, seconds: float) -> None:
        with self.lock:
            self.rows_embedded += rows
            self.batches += 1
            self.batch_seconds += seconds

    def error(self, n: int = 1) -> None:
        with self.lock:
            self.errors += n

    def embed_request(self) -> None:
        with self.lock:
            self.http_embeds += 1
