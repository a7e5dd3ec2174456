"""Warm runs from a shared S3 store (a local SeaweedFS) against warm runs from the local cache.

The 27-stage pipeline of `warm_cold.py`: Alice runs it cold with the store configured
(computing and uploading); then, per round, fresh processes: plain pandas; a teammate with
an empty local cache (everything it needs downloaded); the same teammate again (local
hits only). Two targets: the final daily aggregate (small) and the merged frame of every
order (large, what a download costs). Also the raw transfer of one large object through
s3fs (what lwdp uses) and, when installed, obstore.

    python benchmarks/shared_store.py [--files 25] [--rows 20000] [--rounds 5]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from s3_server import S3Server, running_seaweedfs  # noqa: E402
from warm_cold import make_data, workload_args  # noqa: E402

TARGETS = {"daily": "print(len(daily()))", "merged": "print(len(merged()))"}


def timed(root: Path, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "pipeline.py", *args], cwd=root, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def transfer(server: S3Server, bucket: str, size: int) -> dict[str, float]:
    """Seconds to put and get one object of ``size`` bytes, per client."""
    payload = os.urandom(size)
    fs = server.filesystem()
    results = {}
    started = time.perf_counter()
    fs.pipe_file(f"{bucket}/blob-s3fs", payload)
    results["s3fs put"] = time.perf_counter() - started
    started = time.perf_counter()
    fs.cat_file(f"{bucket}/blob-s3fs")
    results["s3fs get"] = time.perf_counter() - started
    try:
        from obstore.store import S3Store
    except ImportError:
        return results
    store = S3Store(bucket, endpoint=server.endpoint, access_key_id=server.env["AWS_ACCESS_KEY_ID"],
                    secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                    client_options={"allow_http": True})
    import obstore

    started = time.perf_counter()
    obstore.put(store, "blob-obstore", payload)
    results["obstore put"] = time.perf_counter() - started
    started = time.perf_counter()
    obstore.get(store, "blob-obstore").bytes()
    results["obstore get"] = time.perf_counter() - started
    return results


def main() -> None:
    args = workload_args()
    root = Path(tempfile.mkdtemp(prefix="lwdp-bench-shared-"))
    try:
        with running_seaweedfs(root) as server:
            alice, bob = root / "alice", root / "bob"
            make_data(alice, args.files, args.rows)
            pipeline = (alice / "pipeline.py").read_text().replace(TARGETS["daily"], "(merged if sys.argv[2:] == ['merged'] else daily)()")
            (alice / "pipeline.py").write_text(pipeline)
            shutil.copytree(alice, bob)
            server.filesystem().mkdir("bench")
            env = {**os.environ, **server.env, "LWDP_STORE_URL": "s3://bench/lwdp"}
            env = {k: v for k, v in env.items() if k != "LWDP_CACHE_DIR"}
            timed(alice, ["lwdp"], env)  # cold, uploading everything
            timed(alice, ["lwdp", "merged"], env)
            times: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for target in TARGETS:
                    extra = [target] if target == "merged" else []
                    times.setdefault(f"plain pandas ({target})", []).append(timed(alice, ["plain", *extra], env))
                    shutil.rmtree(bob / ".lwdp", ignore_errors=True)
                    times.setdefault(f"from the store ({target})", []).append(timed(bob, ["lwdp", *extra], env))
                    times.setdefault(f"local cache ({target})", []).append(timed(bob, ["lwdp", *extra], env))
            print(f"{args.files} CSVs x {args.rows:,} rows, {args.rounds} rounds, fresh process per run, SeaweedFS on loopback")
            for target in TARGETS:
                base = statistics.median(times[f"plain pandas ({target})"])
                for name in (f"plain pandas ({target})", f"from the store ({target})", f"local cache ({target})"):
                    median = statistics.median(times[name])
                    print(f"{name:28s} median {median:7.3f} s   ratio {median / base:5.2f}x plain pandas")
            size = 200 * 2**20
            for name, seconds in transfer(server, "bench", size).items():
                print(f"{name:28s} {size / seconds / 2**20:7.0f} MiB/s (one 200 MiB object)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
