"""The embedding worker: drains mrl.queue into the sets' vectors tables (loop, batch, maintenance, metrics)."""

from .loop import CHANNEL, Worker
from .maintenance import fit_set_rotation
from .metrics import Metrics

__all__ = ["CHANNEL", "Metrics", "Worker", "fit_set_rotation"]
