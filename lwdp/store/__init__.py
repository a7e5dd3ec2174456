"""Where results live: the catalog (SQL) and the artifact store (files)."""
