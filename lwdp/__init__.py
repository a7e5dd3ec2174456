"""lwdp: rerun a pandas pipeline and recompute only what changed.

Decorate functions with `stage`; call the last one. Cached stages are stored as files
named by a hash of their code, raw input contents, parameters and upstream hashes, and
recorded in a SQLite catalog under the cache directory (see `configure`).
"""

from .config import configure, storage_options
from .errors import LwdpError
from .stage import Stage, stage
from .version import __version__

__all__ = ["LwdpError", "Stage", "__version__", "configure", "stage", "storage_options"]
