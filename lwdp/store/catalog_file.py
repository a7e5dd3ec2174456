"""Facts about the catalog that must be known without importing SQLAlchemy (see
`lwdp.store.quick_catalog`): the SQLite file's name, its busy timeout, and the schema
revision this lwdp writes."""

CATALOG_FILE = "catalog.sqlite"
BUSY_TIMEOUT_MS = 60_000
HEAD_REVISION = "0005"  # tests check this against the newest file in migrations/versions
