"""pgmrl: auto-embedding and Matryoshka two-stage search for PostgreSQL + pgvector.

Importing the package has no side effects: no model is loaded and no server is started.
"""

from ._version import __version__
from .errors import PgmrlError

__all__ = ["Client", "PgmrlError", "__version__"]


def __getattr__(name):  # lazy: keep `import pgmrl` cheap
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(name)
