"""What the fixtures that start real servers (`pg_server`, `s3_server`) share."""

from __future__ import annotations

import os
import socket

import pytest


def service_missing(what: str) -> None:
    """Skip a test whose service can't exist here; in CI (LWDP_REQUIRE_SERVICES=1), fail."""
    if os.environ.get("LWDP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} (LWDP_REQUIRE_SERVICES=1: services must be available)")
    pytest.skip(what)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
