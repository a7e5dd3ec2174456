"""Where an artifact lives: the one rule that gc, verify and the cache consult.

- Without a shared store, an artifact is its file in this cache directory.
- With one, the shared store holds it; a local file is a copy, downloaded when a run needs
  it, so a local copy that was never made is not damage.
- With a shared catalog and no shared store, each member's artifacts are files on their
  own machine: rows whose file is not in this cache directory are a teammate's, and this
  member's gc and verify leave them alone.
- gc evicts from the shared store only with a shared catalog, whose last-access times are
  the team's; a local catalog knows nothing of what teammates use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .remote import RemoteArtifactStore


class Placement(NamedTuple):
    shared_store: RemoteArtifactStore | None
    shared_catalog: bool

    @property
    def local_copy_optional(self) -> bool:
        """A listed artifact may lack a local file (it is downloaded when needed)."""
        return self.shared_store is not None

    @property
    def evicts_from_shared_store(self) -> bool:
        return self.shared_store is not None and self.shared_catalog

    def canonical_names(self, local_names: dict[str, str]) -> dict[str, str]:
        """{hash: suffix} of the copies that make an artifact exist: the shared store's
        objects when there is one, else this cache directory's files."""
        return self.shared_store.artifacts() if self.shared_store is not None else local_names

    def teammates_rows(self, listed: Iterable[str], local_names: dict[str, str]) -> set[str]:
        """Listed hashes that are another member's to manage (see the module docstring)."""
        if self.shared_catalog and self.shared_store is None:
            return {h for h in listed if h not in local_names}
        return set()
