"""The version of lwdp (recorded with every artifact, named in upgrade messages)."""

__version__ = "0.1.0"  # as pyproject.toml says: tests check they agree
