"""The sidecar process (`pgmrl serve`): the worker and the HTTP app (one router per area) side by side, and who may
use the HTTP API (auth: tokens mapped to database roles)."""

from .app import create_app
from .runner import run_sidecar

__all__ = ["create_app", "run_sidecar"]
