"""A process that got its result exits with code 0 (issue 12, bug 8: once in a full suite,
a process died with SIGABRT, "terminate called without an active exception", after a cache
hit and a "not loaded" line).

The thread that aborts is one of Arrow's pool threads, not one of lwdp's (reproduced under
gdb, with the backtrace: PyBuffer::~PyBuffer -> PyGILState_Ensure -> take_gil ->
PyThread_exit_thread -> pthread_exit -> forced unwind -> std::terminate). Reading a parquet
or feather artifact, pyarrow decodes on its pool, and a pool thread may drop the last
reference to the memory it read from just after the read has returned. When a Python object
owns that memory, the thread takes the GIL to release it; if the main thread has begun
finalizing the interpreter by then, Python ends the thread inside that C++ destructor and the
C++ runtime aborts the process. The window is a few milliseconds before shutdown, so the runs
in fresh processes below rarely meet it (0 aborts in 630 such runs on a loaded machine before
any fix); `test_arrow_readers_are_handed_memory_arrow_owns` checks the cause itself.

lwdp's own threads (artifact writers, raw-file hashing) are non-daemon, named
``lwdp-...`` and joined before a call returns; `test_no_thread_a_run_starts_outlives_the_call`
holds them to that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lwdp.hashing.raw_files import RACY_WINDOW_NS

RUNNER = Path(__file__).with_name("runner.py")
DEATH_SIGNS = ("terminate called", "Aborted", "Fatal Python error", "Traceback", "Segmentation fault")

# A wide frame (many columns: many decode tasks on Arrow's pool) made from raw files, upstream
# of a consumer; the script's last statement is the call (or a print of its result), so the
# interpreter starts shutting down while whatever the call left behind is at its latest.
PIPELINE = '''
import sys
import numpy as np
import pandas as pd
from lwdp import stage

@stage(raw="raw/*.bin", n=20000, cache=True)
def stg_wide(raw, n):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{i}": rng.random(n) for i in range(12)})
    frame["s"] = [f"row {i}" for i in range(n)]
    return frame

@stage(wide=stg_wide, k=int(sys.argv[1]), cache=True)
def stg_down(wide, k):
    return wide.assign(w=wide["c0"] * k)

result = stg_down()
if sys.argv[2] == "print":
    print("RESULT", len(result), round(float(result["w"].sum()), 3))
'''


def _write_raw(project, files: int, size: int) -> None:
    (project.root / "raw").mkdir()
    for i in range(files):
        path = project.root / "raw" / f"{i}.bin"
        path.write_bytes(os.urandom(size))


def _run(root: Path, cache: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    env["LWDP_CACHE_DIR"] = str(cache)
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "pipeline.py", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _outcomes(stderr: str) -> dict[str, str]:
    events = [json.loads(line.split(" ", 1)[1]) for line in stderr.splitlines() if line.startswith("LWDP_EVENT ")]
    return {e["stage"].rsplit(".", 1)[-1]: e["outcome"] for e in events}


def _assert_clean(what: str, code: int, stdout: str, stderr: str) -> None:
    assert code == 0, f"{what}: exit code {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    signs = [sign for sign in DEATH_SIGNS if sign in stderr]
    assert not signs, f"{what}: {signs} in stderr:\n{stderr}"


@pytest.mark.slow
def test_short_pipelines_exit_with_code_0_in_many_fresh_processes(project):
    """Cold runs (catalog made, artifacts written on writer threads) that exit right after
    the computing call; warm runs (a hit and a stage not loaded, as in the failing
    test) that exit right after printing the result; and runs that read the upstream and
    compute the consumer. Four at a time on a 2-core machine, to load it as the full suite
    does."""
    project.write("pipeline.py", PIPELINE)
    _write_raw(project, 2, 1000)
    warm = project.root / "warm-cache"
    code, out, err = _run(project.root, warm, "1", "print")
    _assert_clean("first run", code, out, err)

    jobs = (
        [("cold", project.root / f"cold-{i}", "1", "quiet") for i in range(4)]
        + [("warm", warm, "1", "print") for _ in range(14)]
        + [("incremental", warm, str(k), "quiet") for k in range(2, 6)]
    )
    expected = {
        "cold": {"stg_wide": "computed", "stg_down": "computed"},
        "warm": {"stg_down": "hit", "stg_wide": "not-needed"},
        "incremental": {"stg_wide": "hit", "stg_down": "computed"},
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda job: (job[0], *_run(project.root, job[1], *job[2:])), jobs))

    for n, (shape, code, out, err) in enumerate(done):
        _assert_clean(f"run {n} ({shape})", code, out, err)
        assert _outcomes(err) == expected[shape], f"run {n} ({shape}):\n{err}"
    warm_outputs = {out for shape, _, out, _ in done if shape == "warm"}
    assert len(warm_outputs) == 1 and warm_outputs.pop().startswith("RESULT 20000 "), done


# Run in a fresh interpreter: every thread the run started (its name, whether it is a daemon
# and the module that started it), the threads still alive once the call has returned, and
# those still alive when atexit hooks run (after threading's own shutdown has joined its
# non-daemon threads, just before the interpreter finalizes).
THREAD_PROBE = '''
import atexit, json, sys, threading

started = []
_start = threading.Thread.start
def _recording_start(self):
    frame = sys._getframe(1)
    while frame.f_globals.get("__name__", "").startswith(("threading", "concurrent.futures")):
        frame = frame.f_back
    started.append((self.name, self.daemon, frame.f_globals.get("__name__", "")))
    return _start(self)
threading.Thread.start = _recording_start

def others():
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]

atexit.register(lambda: print("AT_EXIT", json.dumps(others()), flush=True))
''' + PIPELINE.replace('if sys.argv[2] == "print":', "if False:") + '''
print("STARTED", json.dumps(started))
print("ALIVE_AFTER_CALL", json.dumps(others()))
'''


def _probe(project, cache: Path, k: str) -> dict[str, list]:
    code, out, err = _run(project.root, cache, k, "quiet")
    _assert_clean("probe", code, out, err)
    return {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in out.splitlines() if " " in line}


def test_no_thread_a_run_starts_outlives_the_call(project):
    project.write("pipeline.py", THREAD_PROBE)
    _write_raw(project, 2, 9 * 2**20)  # enough to be hashed on two threads
    time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)  # so the first run's digest memos are trusted by the next ones
    cache = project.root / "cache"

    cold = _probe(project, cache, "1")  # raw files hashed on threads, two artifacts written on writer threads
    lwdp_started = [name for name, _, module in cold["STARTED"] if module.startswith("lwdp")]
    assert any(name.startswith("lwdp-hash") for name in lwdp_started), cold
    assert any(name.startswith("lwdp-writer") for name in lwdp_started), cold
    assert all(name.startswith("lwdp-") for name in lwdp_started), cold  # every thread lwdp starts says so
    assert not any(daemon for _, daemon, _ in cold["STARTED"]), cold  # threading's shutdown would not join a daemon
    # nothing lwdp started, nor what the libraries it calls started (pyarrow converts a
    # frame on threads of its own), is still running once the call has returned
    assert cold["ALIVE_AFTER_CALL"] == [] and cold["AT_EXIT"] == [], cold

    incremental = _probe(project, cache, "2")  # raw digests from memos; reads the upstream, writes the consumer
    assert {name.split("_")[0] for name, _, module in incremental["STARTED"] if module.startswith("lwdp")} == {"lwdp-writer"}, incremental
    assert incremental["ALIVE_AFTER_CALL"] == [] and incremental["AT_EXIT"] == [], incremental

    warm = _probe(project, cache, "2")  # a hit: no thread needed, none started
    assert warm["STARTED"] == [] and warm["ALIVE_AFTER_CALL"] == [] and warm["AT_EXIT"] == [], warm


@pytest.mark.parametrize("name, entry", [
    ("parquet", "pyarrow.parquet.ParquetFile"),
    ("feather", "pyarrow.feather.read_table"),
    ("orc", "pyarrow.orc.ORCFile"),
])
def test_arrow_readers_are_handed_memory_arrow_owns(name, entry, tmp_path, monkeypatch):
    """The cause of the abort, checked where it starts, without waiting for the race: when
    pyarrow gets the artifact to read, nothing it holds may be owned by a Python object (a
    Python file, a memoryview of the BytesIO, the bytes themselves), since whichever of its
    pool threads drops the last reference needs the GIL to release it. Under gdb, holding
    such a thread at that PyGILState_Ensure until the main thread was finalizing aborted
    every warm run in which a pool thread dropped it: 8 of 20 parquet runs, 6 of 6 feather."""
    import importlib
    import io
    import sys

    import numpy as np
    import pandas as pd
    import pyarrow

    from lwdp.formats import FORMATS

    fmt = FORMATS[name]
    frame = pd.DataFrame({f"c{i}": np.arange(1000, dtype="float64") * i for i in range(6)})
    options = fmt.write(frame, str(tmp_path / f"artifact.{name}"))
    data = (tmp_path / f"artifact.{name}").read_bytes()
    buf = io.BytesIO(data)
    refs_before = sys.getrefcount(data)

    module_name, attr = entry.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, attr)
    seen = []

    def spy(source, *args, **kwargs):
        exported = False
        try:
            buf.truncate(len(data))  # refuses (BufferError) while the BytesIO's memory is exported
        except BufferError:
            exported = True
        seen.append((isinstance(source, pyarrow.NativeFile), exported, sys.getrefcount(data) - refs_before))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(module, attr, spy)
    result = fmt.read(buf, options)

    pd.testing.assert_frame_equal(result, frame)
    # an Arrow file over Arrow's memory: not a Python file, no export of the BytesIO's
    # memory, no reference held to the bytes
    assert seen == [(True, False, 0)], seen
