"""Where an artifact lives (`lwdp.store.placement`), as gc and verify see it: a teammate's
verify never deletes what the team still has, a local copy never downloaded is no damage,
and whatever lwdp did not put where it belongs is reported by verify and removed by gc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import Project, copy_example
from sqlalchemy import NullPool, create_engine, text

import lwdp
import lwdp.store
import lwdp.store.remote
from lwdp.store.artifact_store import UNLISTED_GRACE_S

QUICKSTART_STAGES = {"stg_read_orders", "stg_read_products", "stg_priced_orders", "stg_daily_revenue", "stg_report"}
STRAY_NAME = "ffff" + "0" * 28 + ".parquet"  # a hash whose files belong in ff/, not c0/


def _member(root) -> Project:
    return Project(copy_example("quickstart", root))


def _lwdp(member: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    return subprocess.run(
        [sys.executable, "-m", "lwdp", *args], cwd=member.root, env={**base, **env}, capture_output=True, text=True, timeout=120,
    )


def _catalog_hashes(url: str) -> list[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return sorted(row[0] for row in conn.execute(text("SELECT hash FROM artifacts")))
    finally:
        engine.dispose()


def _objects(s3_server, bucket: str) -> list[str]:
    return sorted(s3_server.filesystem().find(f"{bucket}/lwdp"))


def test_a_teammates_verify_with_an_empty_cache_finds_nothing_wrong_and_repair_deletes_nothing(tmp_path, s3_server, bucket, pg_url):
    """Regression (issue 12, bug 1): Bob's verify called all five artifacts missing, and
    --repair deleted their rows from the shared catalog, leaving the objects unlisted."""
    alice, bob = _member(tmp_path / "alice"), _member(tmp_path / "bob")
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp", "LWDP_CATALOG_URL": pg_url}
    assert alice.run(env=env).ran() == QUICKSTART_STAGES
    rows, objects = _catalog_hashes(pg_url), _objects(s3_server, bucket)
    assert len(rows) == len(QUICKSTART_STAGES) and len(objects) == 2 * len(QUICKSTART_STAGES)

    check = _lwdp(bob, env, "verify")
    assert check.returncode == 0 and "missing" not in check.stdout, check.stdout + check.stderr
    repaired = _lwdp(bob, env, "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _catalog_hashes(pg_url) == rows and _objects(s3_server, bucket) == objects
    assert bob.run(env=env).ran() == set()


def test_with_a_shared_store_a_lost_local_copy_is_no_damage_and_a_corrupt_one_loses_only_itself(tmp_path, s3_server, bucket):
    """A local catalog and a shared store: the store holds the artifacts, local files are
    copies. verify --repair removes a corrupt copy and keeps the row; the next run
    downloads what it needs."""
    alice = _member(tmp_path / "alice")
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp"}
    alice.run(env=env)
    rows = alice.sql("SELECT hash FROM artifacts ORDER BY hash")
    files = sorted(p for p in (alice.cache_dir / "artifacts").rglob("*") if p.is_file() and not p.name.endswith(".json"))
    lost, corrupt = files[0], files[1]
    lost.unlink()
    corrupt.write_bytes(b"x" + corrupt.read_bytes()[1:])

    check = _lwdp(alice, env, "verify")
    assert check.returncode == 1, check.stdout + check.stderr
    problems = [line.split() for line in check.stdout.splitlines()[1:] if line.strip()]
    assert [(p[0], p[-1]) for p in problems] == [("corrupt", str(corrupt))], check.stdout
    repaired = _lwdp(alice, env, "verify", "--repair")
    assert repaired.returncode == 0 and "local copy removed" in repaired.stdout, repaired.stdout + repaired.stderr
    assert alice.sql("SELECT hash FROM artifacts ORDER BY hash") == rows and not corrupt.exists()
    assert len(_objects(s3_server, bucket)) == 2 * len(QUICKSTART_STAGES)
    assert alice.run(env=env).ran() == set()
    assert _lwdp(alice, env, "verify").returncode == 0


def _age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _json(member: Project, env: dict[str, str], *args: str) -> tuple[int, dict]:
    done = _lwdp(member, env, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("where", ["the local cache", "a file:// shared store"])
def test_a_stray_file_is_reported_by_verify_and_removed_by_gc_once_older_than_the_grace_period(tmp_path, where):
    """Regression (issue 12, bug 3): a file in the wrong bucket folder was never seen."""
    member = _member(tmp_path / "member")
    shared = tmp_path / "shared"
    env = {"LWDP_STORE_URL": shared.as_uri()} if where == "a file:// shared store" else {}
    member.run(env=env)
    root = shared if env else member.cache_dir / "artifacts"
    strays = [root / "c0" / STRAY_NAME, root / "notes.txt", root / "ab" / "x" / "deep.parquet"]
    for path in strays:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an artifact")
    for path in strays[:-1]:
        _age(path, 2 * UNLISTED_GRACE_S)
    young = strays[-1]  # written just now (a tool at work, maybe): left alone for now

    def named(path) -> str:
        return f"{shared.as_uri()}/{path.relative_to(shared).as_posix()}" if env else str(path)

    kind = "shared-stray" if env else "stray"
    code, check = _json(member, env, "verify")
    assert code == 1 and sorted(p["path"] for p in check["problems"] if p["kind"] == kind) == sorted(map(named, strays[:-1]))
    assert [p for p in check["problems"] if p["kind"] != kind] == []

    _, dry = _json(member, env, "gc", "--dry-run")
    assert sorted(r["path"] for r in dry["removed"] if r["reason"] == "stray") == sorted(map(named, strays[:-1]))
    assert all(p.exists() for p in strays)
    _, collected = _json(member, env, "gc")
    assert [r["reason"] for r in collected["removed"]] == ["stray", "stray"]
    assert [p.exists() for p in strays] == [False, False, True]
    assert member.run(env=env).ran() == set()  # every artifact survived
    _age(young, 2 * UNLISTED_GRACE_S)
    assert _json(member, env, "verify", "--repair")[0] == 0 and not young.exists()
    assert _json(member, env, "verify")[0] == 0


def test_a_stray_object_in_an_s3_store_is_reported_and_removed(project, s3_server, bucket, monkeypatch):
    """S3 can't backdate an object: the grace period is made zero, and the listing's own
    LastModified times decide."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(lwdp.store.remote, "UNLISTED_GRACE_S", -5.0)
    lwdp.configure(store_url=f"s3://{bucket}/lwdp")
    try:
        fs = s3_server.filesystem()
        stray = f"{bucket}/lwdp/c0/{STRAY_NAME}"
        fs.pipe_file(stray, b"not an artifact")
        report = lwdp.store.verify()
        assert [(p.kind, p.path) for p in report.problems] == [("shared-stray", f"s3://{stray}")]
        collected = lwdp.store.gc()
        assert [(r.reason, r.path) for r in collected.removed] == [("stray", f"s3://{stray}")]
        assert not fs.exists(stray) and lwdp.store.verify().ok
    finally:
        lwdp.configure(store_url=None)
