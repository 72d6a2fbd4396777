"""The package version (one place; the install records it with the schema)."""

__version__ = "0.1.0"
