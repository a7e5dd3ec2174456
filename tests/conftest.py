"""Shared fixtures: every test gets its own working directory and cache, nothing else."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import lwdp
import lwdp.store
from pg_server import pg_server, pg_url  # noqa: F401 (fixtures: a PostgreSQL server, a database per test)
from s3_server import bucket, s3_server  # noqa: F401 (fixtures: an S3 server, a bucket per test)

RUNNER = Path(__file__).with_name("runner.py")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DROP_FILE_POWERS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    events: list[dict]

    def outcomes(self) -> dict[str, str]:
        """{stage function name: outcome} for every stage event of the run."""
        return {e["stage"].rsplit(".", 1)[-1]: e["outcome"] for e in self.events}

    def ran(self) -> set[str]:
        return {name for name, outcome in self.outcomes().items() if outcome.startswith("computed")}


class Project:
    """A user's project directory: raw files, pipeline scripts, and runs in fresh processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache_dir = root / ".lwdp"

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def edit(self, relpath: str, text: str) -> Path:
        """Rewrite an existing file as a user does: seconds after it was last written.

        Python reuses a module's cached bytecode (``__pycache__``) while the source's mtime,
        in whole seconds, and its size are those it was compiled from. A test that rewrites
        a module to a text of the same size within the same second would run the old
        bytecode (where bytecode is written: users' machines, unlike CI with
        PYTHONDONTWRITEBYTECODE=1). A user's edit comes seconds later, so its mtime is at
        least 2 s past the previous one: Python's own check then sees the edit, as it does
        for the user (removing the bytecode instead would skip that check).
        """
        before = (self.root / relpath).stat().st_mtime_ns
        path = self.write(relpath, text)
        later = max(path.stat().st_mtime_ns, before + 2_000_000_000)
        os.utime(path, ns=(later, later))
        return path

    def run(
        self, script: str = "pipeline.py", *args: str, env: dict[str, str] | None = None, check: bool = True,
        honour_permissions: bool = False,
    ) -> RunResult:
        """Run ``script`` as ``python script`` would, in a new interpreter.

        ``honour_permissions``: file permissions apply even when the tests run as root
        (the process runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH).
        """
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
        full_env.update(env or {})
        prefix = DROP_FILE_POWERS if honour_permissions and os.geteuid() == 0 else []
        proc = subprocess.run(
            [*prefix, sys.executable, str(RUNNER), script, *args],
            cwd=self.root, env=full_env, capture_output=True, text=True, timeout=300,
        )
        events = [json.loads(line.split(" ", 1)[1]) for line in proc.stderr.splitlines() if line.startswith("LWDP_EVENT ")]
        result = RunResult(proc.returncode, proc.stdout, proc.stderr, events)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return result

    def sql(self, query: str, *params: object) -> list[tuple]:
        """Rows of a plain-sqlite3 query on the catalog, as a user would run it."""
        with sqlite3.connect(self.cache_dir / "catalog.sqlite") as conn:
            return conn.execute(query, params).fetchall()


def copy_example(name: str, dest: Path, examples: Path = EXAMPLES) -> Path:
    """A copy of ``examples/<name>`` as the repo ships it: without what a user's runs of it
    left there (its cache, bytecode), so a test's first run is really cold."""
    shutil.copytree(examples / name, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lwdp", "__pycache__"))
    return dest


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """An empty project directory as the working directory, with lwdp's default cache in it."""
    for name in list(os.environ):
        if name.startswith("LWDP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    reset_lwdp()
    yield Project(tmp_path)
    reset_lwdp()


def reset_lwdp() -> None:
    """Every option back to the environment/default rule, and every registry this process
    holds (catalog connections, store clients, once-per-process warnings) emptied, so a
    test that failed half-way leaks nothing into the next."""
    lwdp.configure(**dict.fromkeys(inspect.signature(lwdp.configure).parameters))
    lwdp.store.close()


@pytest.fixture
def stage_events(caplog: pytest.LogCaptureFixture):
    """In-process runs: a function returning {stage function name: outcome} logged so far."""
    caplog.set_level("INFO", logger="lwdp")

    def outcomes() -> dict[str, str]:
        found = {}
        for record in caplog.records:
            event = getattr(record, "lwdp_event", None)
            if event is not None:
                found[event.stage.rsplit(".", 1)[-1]] = event.outcome
        return found

    return outcomes
