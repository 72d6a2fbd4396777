"""The one exception type pgmrl raises for user-facing problems (bad input, missing pieces)."""


class PgmrlError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class DatabaseUnavailable(PgmrlError):
    """The database could not be reached (down, restarting, wrong address)."""


class SchemaMismatch(PgmrlError):
    """The database's pgmrl schema is not the one this pgmrl installs (older: run `pgmrl install`)."""
