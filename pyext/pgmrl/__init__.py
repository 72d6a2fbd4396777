"""pgmrl: auto-embedding and Matryoshka two-stage search for PostgreSQL + pgvector.

Importing the package has no side effects: no model is loaded and no server is started.
"""

from .errors import PgmrlError

__version__ = "0.1.0"

__all__ = ["Client", "PgmrlError", "__version__"]


def __getattr__(name):  # lazy: keep `import pgmrl` cheap
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(name)
