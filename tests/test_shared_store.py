"""A team shares an S3 bucket as artifact store (a real SeaweedFS on 127.0.0.1).

Alice computes, Bob (another cache directory, his own catalog) gets every cached stage
from the bucket with zero recomputation, then from his local copy without the network.
Also: pickles refused unless trusted, hostile manifests ignored, a store that refuses
uploads costs nothing but the sharing, and racing publishers end with one whole object.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
from conftest import Project, copy_example

QUICKSTART_STAGES = {"stg_read_orders", "stg_read_products", "stg_priced_orders", "stg_daily_revenue", "stg_report"}


def _team_member(root: Path) -> Project:
    """A checkout of the quickstart in ``root`` (same code, same raw files)."""
    return Project(copy_example("quickstart", root))


def _env(s3_server, bucket: str, **extra: str) -> dict[str, str]:
    return {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp", **extra}


def _hits(run) -> set[str]:
    return {name for name, outcome in run.outcomes().items() if outcome == "hit"}


def test_bob_gets_alices_results_from_the_bucket_then_from_his_local_copy(tmp_path, s3_server, bucket):
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    env = _env(s3_server, bucket)
    first = alice.run(env=env)
    assert first.ran() == QUICKSTART_STAGES
    # Content-addressed objects, each with its manifest.
    fs = s3_server.filesystem()
    keys = [k.split("/", 2)[2] for k in fs.find(f"{bucket}/lwdp")]
    artifacts = {k for k in keys if not k.endswith(".manifest.json")}
    assert len(artifacts) == len(QUICKSTART_STAGES)
    assert {f"{k.rsplit('.', 1)[0]}.manifest.json" for k in artifacts} == set(keys) - artifacts
    for key in artifacts:
        stage_hash = key.split("/")[-1].split(".")[0]
        assert key.startswith(f"{stage_hash[:2]}/")
        manifest = json.loads(fs.cat_file(f"{bucket}/lwdp/{stage_hash[:2]}/{stage_hash}.manifest.json"))
        assert manifest["hash"] == stage_hash and manifest["size"] == fs.size(f"{bucket}/lwdp/{key}")
        assert set(manifest["stage_manifest"]["inputs"])  # what went into it, for lineage and explanations
        assert "SECRET" not in json.dumps(manifest).upper() and "lwdp-test" not in json.dumps(manifest)

    # Bob: empty cache, his own catalog: nothing recomputed, the same report.
    second = bob.run(env=env)
    assert second.ran() == set()
    assert _hits(second) == {"stg_report"}
    assert second.stdout == first.stdout
    # Bob's lineage has the whole history, as Alice's: his run evaluated every hash and
    # recorded each stage's inputs, down to the raw files; the stage manifest of the
    # artifact he downloaded came along with it.
    history = "SELECT hash, stage, input_name, input_kind, input_hash, input_path FROM lineage ORDER BY hash, input_name"
    assert bob.sql(history) == alice.sql(history)
    assert {row[1] for row in bob.sql(history)} == {f"pipeline.{name}" for name in QUICKSTART_STAGES}
    assert {row[3] for row in bob.sql(history)} == {"raw", "stage", "param"}
    assert bob.sql("SELECT stage FROM stage_manifests") == [("pipeline.stg_report",)]
    # A local hit never touches the network: an unreachable store changes nothing.
    offline = bob.run(env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert _hits(offline) == {"stg_report"} and offline.stdout == first.stdout
    assert "WARNING" not in offline.stderr.upper()


def test_each_stage_bob_needs_comes_from_the_bucket(tmp_path, s3_server, bucket):
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    env = _env(s3_server, bucket)
    alice.run(env=env)
    # Bob changes the last stage: it reruns on his side, from Alice's upstream result.
    source = (bob.root / "pipeline.py").read_text()
    (bob.root / "pipeline.py").write_text(source.replace('.fillna(0.0)', '.fillna(0.0).round(2)'))
    run = bob.run(env=env)
    assert run.ran() == {"stg_report"}
    assert _hits(run) == {"stg_daily_revenue"}


PICKLED = '''
import logging
logging.basicConfig(format="%(levelname)s %(message)s")
from lwdp import stage

@stage(n=3, cache=True)
def stg_counts(n):
    return {"n": n, "squares": tuple(i * i for i in range(n))}  # a tuple: JSON can't keep it, so pickled

print("RESULT", stg_counts())
'''


def test_a_pickle_from_the_bucket_is_loaded_only_when_trusted(tmp_path, s3_server, bucket):
    alice, bob = Project(tmp_path / "alice"), Project(tmp_path / "bob")
    for member in (alice, bob):
        member.write("pipeline.py", PICKLED)
    env = _env(s3_server, bucket)
    assert alice.run(env=env).ran() == {"stg_counts"}
    untrusted = bob.run(env=env)
    assert untrusted.ran() == {"stg_counts"}
    assert "is a pickle, and loading a pickle runs code: recomputing instead" in untrusted.stderr
    assert untrusted.events[0]["reason"] == "pickle in the shared store not trusted"
    carol = Project(tmp_path / "carol")
    carol.write("pipeline.py", PICKLED)
    trusted = carol.run(env={**env, "LWDP_TRUST_PICKLE": "1"})
    assert _hits(trusted) == {"stg_counts"} and "RESULT {'n': 3, 'squares': (0, 1, 4)}" in trusted.stdout
    # A pickle one computed oneself is always loaded.
    assert _hits(bob.run(env=env)) == {"stg_counts"}


HOSTILE_MANIFESTS = {
    "another hash": lambda m: {**m, "hash": "0" * 32},
    "a format that is a path": lambda m: {**m, "format": "../../../../etc/passwd"},
    "a negative size": lambda m: {**m, "size": -1},
    "a checksum that isn't one": lambda m: {**m, "checksum": "../x"},
    "not an object": lambda m: ["hash", m["hash"]],
    "a wrong checksum": lambda m: {**m, "checksum": "f" * 32},
}


@pytest.mark.parametrize("what", list(HOSTILE_MANIFESTS))
def test_a_hostile_manifest_is_ignored_and_reads_or_deletes_nothing_outside_the_prefix(tmp_path, s3_server, bucket, what):
    alice, bob = Project(tmp_path / "alice"), Project(tmp_path / "bob")
    script = "import logging\nlogging.basicConfig()\nfrom lwdp import stage\n\n@stage(n=3, cache=True)\ndef stg_n(n):\n    return n * 7\n\nprint('RESULT', stg_n())\n"
    for member in (alice, bob):
        member.write("pipeline.py", script)
    env = _env(s3_server, bucket, LWDP_TRUST_PICKLE="1")
    alice.run(env=env)
    fs = s3_server.filesystem()
    fs.pipe_file(f"{bucket}/outside.txt", b"keep me")
    (manifest_key,) = fs.glob(f"{bucket}/lwdp/*/*.manifest.json")
    fs.pipe_file(manifest_key, json.dumps(HOSTILE_MANIFESTS[what](json.loads(fs.cat_file(manifest_key)))).encode())
    run = bob.run(env=env)
    assert run.ran() == {"stg_n"} and "RESULT 21" in run.stdout
    assert "WARNING" in run.stderr and "recomputing" in run.stderr
    assert fs.cat_file(f"{bucket}/outside.txt") == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice", "bob"]


def test_a_store_that_refuses_uploads_costs_only_the_sharing(project, s3_server, bucket):
    project.write("pipeline.py", PICKLED)
    wrong_secret = "not-the-secret-42"
    env = _env(s3_server, bucket, AWS_SECRET_ACCESS_KEY=wrong_secret)
    run = project.run(env=env)
    assert run.ran() == {"stg_counts"} and "RESULT" in run.stdout
    assert "cached locally but not shared" in run.stderr and f"s3://{bucket}/lwdp" in run.stderr
    assert wrong_secret not in run.stderr  # credentials are never logged
    assert s3_server.filesystem().find(bucket) == []
    assert _hits(project.run(env=env)) == {"stg_counts"}


RACE = '''
import logging
logging.basicConfig()
import sys, time
from pathlib import Path
from lwdp import stage

@stage(n=5, cache=True)
def stg_slow(n):
    # both processes are inside the stage before either publishes
    Path(sys.argv[1]).touch()
    while not all(Path(p).exists() for p in sys.argv[2:]):
        time.sleep(0.01)
    return {"n": n, "pid_free_result": list(range(n))}

print("RESULT", stg_slow())
'''


def test_two_machines_racing_to_publish_end_with_one_whole_object(tmp_path, s3_server, bucket):
    members = [Project(tmp_path / name) for name in ("alice", "bob")]
    flags = [str(tmp_path / f"{name}.inside") for name in ("alice", "bob")]
    env = _env(s3_server, bucket, LWDP_TRUST_PICKLE="1")
    procs = []
    for member, flag in zip(members, flags):
        member.write("pipeline.py", RACE)
        procs.append(subprocess.Popen(
            [sys.executable, "pipeline.py", flag, *flags], cwd=member.root, env={**member_env(), **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert all("RESULT {'n': 5" in out for out, _ in outputs)
    fs = s3_server.filesystem()
    keys = fs.find(f"{bucket}/lwdp")
    assert len(keys) == 2  # one artifact, one manifest
    (payload,) = [k for k in keys if not k.endswith(".manifest.json")]
    manifest = json.loads(fs.cat_file(f"{payload.split('.', 1)[0]}.manifest.json"))
    assert xxhash.xxh3_128_hexdigest(fs.cat_file(payload)) == manifest["checksum"]
    # Each machine's next run is a hit (the loser fetches the winner's object), and so is a third's.
    carol = Project(tmp_path / "carol")
    carol.write("pipeline.py", RACE)
    for member in (*members, carol):
        run = member.run("pipeline.py", *flags, env=env)
        assert _hits(run) == {"stg_slow"} and "WARNING" not in run.stderr.upper(), run.stderr


def member_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}


REMOTE_RAW = '''
import sys
import pandas as pd
import lwdp
from lwdp import stage

@stage(orders=sys.argv[1], cache=True)
def stg_orders(orders):
    if "*" in orders:
        import fsspec
        fs, _ = fsspec.url_to_fs(orders)
        return pd.concat([pd.read_csv(f"s3://{key}") for key in sorted(fs.glob(orders))], ignore_index=True)
    return pd.read_csv(orders, storage_options=lwdp.storage_options())

print("TOTAL", stg_orders()["qty"].sum())
'''


@pytest.mark.parametrize("pattern", ["raw/orders.csv", "raw/*.csv"], ids=["object", "glob"])
def test_a_raw_input_in_the_bucket_is_hashed_from_its_metadata_and_an_overwrite_invalidates(project, s3_server, bucket, pattern):
    fs = s3_server.filesystem()
    fs.pipe_file(f"{bucket}/raw/orders.csv", b"qty\n1\n2\n")
    url = f"s3://{bucket}/{pattern}"
    project.write("pipeline.py", REMOTE_RAW)
    env = s3_server.env
    cold = project.run("pipeline.py", url, env=env)
    assert cold.ran() == {"stg_orders"} and "TOTAL 3" in cold.stdout
    assert _hits(project.run("pipeline.py", url, env=env)) == {"stg_orders"}
    fs.pipe_file(f"{bucket}/raw/orders.csv", b"qty\n1\n2\n")  # rewritten, same bytes: same ETag
    assert _hits(project.run("pipeline.py", url, env=env)) == {"stg_orders"}
    fs.pipe_file(f"{bucket}/raw/orders.csv", b"qty\n1\n5\n")  # overwritten
    changed = project.run("pipeline.py", url, env=env)
    assert changed.ran() == {"stg_orders"} and "TOTAL 6" in changed.stdout
    assert changed.events[0]["reason"] == f"raw input `orders` ({url}) content changed"
    if "*" in pattern:
        fs.pipe_file(f"{bucket}/raw/more.csv", b"qty\n10\n")
        grown = project.run("pipeline.py", url, env=env)
        assert grown.ran() == {"stg_orders"} and "TOTAL 16" in grown.stdout


def test_a_missing_raw_object_is_a_clear_error(project, s3_server, bucket):
    project.write("pipeline.py", REMOTE_RAW)
    for url in (f"s3://{bucket}/raw/nope.csv", f"s3://{bucket}/raw/*.parquet"):
        run = project.run("pipeline.py", url, env=s3_server.env, check=False)
        assert run.returncode == 1
        assert "RawInputNotFoundError: stage 'pipeline.stg_orders', input 'orders'" in run.stderr
        assert f"s3://{bucket}/raw/nope.csv not found" in run.stderr or "matches no object" in run.stderr


BIG = '''
import numpy as np
import pandas as pd
from lwdp import stage

@stage(n=2_000_000, cache=True)
def stg_big(n):
    rng = np.random.default_rng(7)
    return pd.DataFrame({"a": rng.random(n), "b": rng.integers(0, 1 << 40, n)})

print("SUM", stg_big()["b"].sum())
'''


def _consistent(fs, prefix: str) -> str:
    """What a killed publisher left under ``prefix``: "nothing", "object only" or "published"
    (then the object is whole: its checksum is the manifest's)."""

    keys = fs.find(prefix)
    manifests = [k for k in keys if k.endswith(".manifest.json")]
    objects = [k for k in keys if not k.endswith(".manifest.json")]
    assert len(objects) <= 1 and len(manifests) <= 1, keys
    if not manifests:
        return "object only" if objects else "nothing"
    manifest = json.loads(fs.cat_file(manifests[0]))
    assert objects and xxhash.xxh3_128_hexdigest(fs.cat_file(objects[0])) == manifest["checksum"]
    return "published"


@pytest.mark.slow
def test_a_publisher_killed_at_any_moment_leaves_nothing_a_reader_could_take_for_whole(tmp_path, s3_server, bucket):
    expected, duration = b"", 0.0
    seen = set()
    rng = random.Random(11)
    for i in range(12):  # six kills at least; more while every kill came after the publish
        if i > 6 and len(seen) >= 2:
            break
        alice, bob = Project(tmp_path / f"alice{i}"), Project(tmp_path / f"bob{i}")
        for member in (alice, bob):
            member.write("pipeline.py", BIG)
        env = {**member_env(), **_env(s3_server, bucket), "LWDP_STORE_URL": f"s3://{bucket}/run{i}"}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "pipeline.py"], cwd=alice.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if i == 0:  # one undisturbed run gives the right answer, and how long a run takes
            expected, _ = proc.communicate(timeout=120)
            duration = time.monotonic() - started
        else:  # kills anywhere in the later part of a run: computing, writing, uploading
            time.sleep(rng.uniform(0.3, 0.95) * duration)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        seen.add(_consistent(s3_server.filesystem(), f"{bucket}/run{i}"))
        run = bob.run(env={**_env(s3_server, bucket), "LWDP_STORE_URL": f"s3://{bucket}/run{i}"})
        assert run.stdout.encode() == expected
        assert _consistent(s3_server.filesystem(), f"{bucket}/run{i}") == "published"
    assert "published" in seen and len(seen) >= 2, seen  # the kills did land at different moments


def _lwdp(member: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lwdp", *args], cwd=member.root, env={**member_env(), **env},
        capture_output=True, text=True, timeout=120,
    )


def test_verify_checks_the_shared_store_and_repair_publishes_intact_local_copies(tmp_path, s3_server, bucket):
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    env = _env(s3_server, bucket)
    alice.run(env=env)
    fs = s3_server.filesystem()
    objects = sorted(k for k in fs.find(f"{bucket}/lwdp") if not k.endswith(".manifest.json"))
    flipped, unpublished, gone = objects[:3]
    fs.pipe_file(flipped, b"x" + fs.cat_file(flipped)[1:])
    fs.rm_file(f"{unpublished.rsplit('.', 1)[0]}.manifest.json")
    fs.rm_file(gone)
    check = _lwdp(alice, env, "verify")
    assert check.returncode == 1, check.stdout + check.stderr
    kinds = {line.split()[0] for line in check.stdout.splitlines()[1:] if line.strip()}
    assert kinds == {"shared-corrupt", "shared-unpublished", "shared-missing"}, check.stdout
    repaired = _lwdp(alice, env, "verify", "--repair")
    assert repaired.returncode == 0 and repaired.stdout.count("published again from the local copy") == 3, repaired.stdout
    assert _lwdp(alice, env, "verify").returncode == 0  # every object downloaded and checked
    run = bob.run(env=env)
    assert run.ran() == set() and "WARNING" not in run.stderr


def test_alice_and_bob_share_a_bucket_and_a_postgres_catalog(tmp_path, s3_server, bucket, pg_url):
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    env = _env(s3_server, bucket, LWDP_CATALOG_URL=pg_url)
    first = alice.run(env=env)
    assert first.ran() == QUICKSTART_STAGES
    second = bob.run(env=env)
    assert second.ran() == set() and _hits(second) == {"stg_report"} and second.stdout == first.stdout
    assert not (bob.root / ".lwdp" / "catalog.sqlite").exists()
    # Bob sees the whole history: every ancestor, down to Alice's raw files.
    lineage = _lwdp(bob, env, "lineage", "stg_report")
    assert lineage.returncode == 0, lineage.stderr
    for name in QUICKSTART_STAGES:
        assert name in lineage.stdout
    assert "raw/products.csv" in lineage.stdout and "raw/orders_*.csv" in lineage.stdout


# gc of everything, again and again until told to stop; one line per pass: the reader run
# (marker file) present both when it started and when it ended ("-" if none), and the
# number of artifacts it removed.
GC_LOOP = '''
import os, sys
import lwdp.store

race = sys.argv[1]
def reading():
    return {name for name in os.listdir(race) if name.startswith("reading-")}

while not os.path.exists(os.path.join(race, "stop")):
    before = reading()
    removed = lwdp.store.gc(max_age="0s").count
    within = before & reading()
    with open(os.path.join(race, "gc.log"), "a") as log:
        log.write(f"{min(within, default='-')} {removed}\\n")
'''


def test_gc_on_the_shared_store_keeps_what_teammates_use_and_readers_stay_correct(tmp_path, s3_server, bucket, pg_url):
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    env = _env(s3_server, bucket, LWDP_CATALOG_URL=pg_url)
    alice.run(env=env)
    bob.run(env=env)  # Bob's hit is the most recent use of stg_report
    fs = s3_server.filesystem()
    report_hash = next(e["hash"] for e in bob.run(env=env).events if e["stage"].endswith("stg_report"))
    size = fs.size(next(k for k in fs.find(f"{bucket}/lwdp") if report_hash in k and not k.endswith(".json")))
    collected = _lwdp(alice, env, "gc", "--max-size", str(size))
    assert collected.returncode == 0, collected.stderr
    assert {k.rsplit("/", 1)[-1].split(".")[0] for k in fs.find(f"{bucket}/lwdp")} == {report_hash}
    # Readers racing a gc that evicts everything, again and again: each gets the right
    # answer, downloaded or recomputed, never an error or a partial object.
    reader = _team_member(tmp_path / "carol")
    expected = bob.run(env=env).stdout
    race = tmp_path / "race"
    race.mkdir()
    gc_loop = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(race)], cwd=alice.root, env={**member_env(), **env})
    try:
        deadline = time.monotonic() + 120
        while not (race / "gc.log").exists():  # until its first pass is done
            assert gc_loop.poll() is None and time.monotonic() < deadline, "the gc loop never finished a pass"
            time.sleep(0.05)
        for i in range(3):
            shutil.rmtree(reader.root / ".lwdp", ignore_errors=True)
            (race / f"reading-{i}").touch()
            assert reader.run(env=env).stdout == expected
            (race / f"reading-{i}").unlink()
    finally:
        (race / "stop").touch()
        assert gc_loop.wait(timeout=300) == 0
    # The race happened: whole gc passes ran inside reader runs, some of them removing objects.
    passes = [line.split() for line in (race / "gc.log").read_text().splitlines()]
    inside = [(reading, int(removed)) for reading, removed in passes if reading != "-"]
    assert len({reading for reading, _ in inside}) == 3, passes
    assert any(removed for _, removed in inside), passes


def test_downloads_go_through_obstore_without_importing_s3fs(tmp_path, s3_server, bucket):
    script = PICKLED + "import sys\nprint('S3FS', 's3fs' in sys.modules)\n"
    alice, bob = Project(tmp_path / "alice"), Project(tmp_path / "bob")
    for member in (alice, bob):
        member.write("pipeline.py", script)
    env = _env(s3_server, bucket, LWDP_TRUST_PICKLE="1")
    assert "S3FS True" in alice.run(env=env).stdout  # uploads go through s3fs
    fetched = bob.run(env=env)
    assert _hits(fetched) == {"stg_counts"} and "S3FS False" in fetched.stdout


def test_any_fsspec_url_serves_as_the_store_a_shared_directory(tmp_path):
    """file:// (a directory both machines mount): published by rename, hits for Bob."""
    alice, bob = _team_member(tmp_path / "alice"), _team_member(tmp_path / "bob")
    shared = tmp_path / "shared"
    env = {"LWDP_STORE_URL": shared.as_uri()}
    first = alice.run(env=env)
    assert first.ran() == QUICKSTART_STAGES
    names = sorted(p.name for p in shared.rglob("*") if p.is_file())
    assert len(names) == 2 * len(QUICKSTART_STAGES) and not [n for n in names if ".tmp-" in n]
    second = bob.run(env=env)
    assert second.ran() == set() and second.stdout == first.stdout
    assert "downloaded from file://" in second.stderr
