"""Why did this rerun: `f.explain()` and the INFO line of a miss name the cause, for raw
inputs, lost artifacts and package versions; stages defined without a source file (``exec``,
``python -c``, IPython cells) cache and hit.

(Code edits, helpers, constants, closures, defaults and parameters: test_deep_hash.py.)
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest
from conftest import Project

import lwdp
import lwdp.store
from lwdp.errors import UnknownPackageError

CHAIN = '''
import json
import sys

import pandas as pd
import lwdp
from lwdp import stage

lwdp.configure(hash_packages=sys.argv[1:] or None)


@stage(src="raw/in.csv", cache=True)
def stg_read(src):
    return pd.read_csv(src)


@stage(raw=stg_read, factor=2, cache=True)
def stg_scale(raw, factor):
    return raw * factor


print("EXPLAIN", json.dumps({s.name.rsplit(".", 1)[-1]: str(s.explain()) for s in (stg_read, stg_scale)}))
if "--explain-only" not in sys.argv:
    stg_scale()
'''


def _explained(run) -> dict[str, str]:
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("EXPLAIN ")).split(" ", 1)[1])


def _reasons(run) -> dict[str, str]:
    return {e["stage"].rsplit(".", 1)[-1]: e["reason"] for e in run.events if e["outcome"] == "computed"}


def _assert_explain_agrees_with_the_run(run) -> None:
    """What explain() said just before the call is what the call did: a fresh stage is not
    computed, and a computed one was explained with the reason the run logs."""
    computed = _reasons(run)
    for name, said in _explained(run).items():
        if name in computed:
            reason = computed[name]
            assert said in (f"stage pipeline.{name}: stale: {reason}", f"stage pipeline.{name}: never computed: {reason}"), (name, said, reason)
        else:
            assert ": fresh (cached as " in said or run.outcomes()[name] == "not-needed", (name, said, run.outcomes())


@pytest.fixture
def chain(project):
    project.write("raw/in.csv", "v\n1\n2\n")
    project.write("pipeline.py", CHAIN)
    first = project.run()
    assert _explained(first) == {
        "stg_read": "stage pipeline.stg_read: never computed: never computed",
        "stg_scale": "stage pipeline.stg_scale: never computed: never computed",
    }
    assert _reasons(first) == {"stg_read": "never computed", "stg_scale": "never computed"}
    _assert_explain_agrees_with_the_run(first)
    return project


def test_a_fresh_stage_says_so(chain):
    explained = _explained(chain.run())
    assert explained["stg_scale"].startswith("stage pipeline.stg_scale: fresh (cached as ")


def test_a_changed_cache_format_is_stale_before_the_call_that_recomputes_it(chain):
    """Regression (issue 12, bug 2a): explain() said fresh, and the call recomputed."""
    chain.write("pipeline.py", CHAIN.replace("factor=2, cache=True", "factor=2, cache=True, cache_format='csv'"))
    run = chain.run()
    assert _explained(run)["stg_scale"] == "stage pipeline.stg_scale: stale: cache format changed parquet -> csv"
    assert _reasons(run) == {"stg_scale": "cache format changed parquet -> csv"}
    _assert_explain_agrees_with_the_run(run)
    assert _explained(chain.run())["stg_scale"].startswith("stage pipeline.stg_scale: fresh (cached as ")


def test_a_teammates_result_in_the_shared_store_is_fresh_before_the_call_downloads_it(tmp_path, s3_server, bucket):
    """Regression (issue 12, bug 2b): with an empty cache directory, explain() said "never
    computed" for a stage the call then downloaded from the shared store."""
    env = {**s3_server.env, "LWDP_STORE_URL": f"s3://{bucket}/lwdp"}
    alice, bob = Project(tmp_path / "alice"), Project(tmp_path / "bob")
    for member in (alice, bob):
        member.write("raw/in.csv", "v\n1\n2\n")
        member.write("pipeline.py", CHAIN)
    assert alice.run(env=env).ran() == {"stg_read", "stg_scale"}
    run = bob.run(env=env)
    assert _explained(run)["stg_scale"].startswith("stage pipeline.stg_scale: fresh (cached as ")
    assert _explained(run)["stg_scale"].endswith(" in the shared store, to be downloaded)")
    assert run.outcomes() == {"stg_read": "not-needed", "stg_scale": "hit"}
    (hit,) = [e for e in run.events if e["outcome"] == "hit"]
    assert hit["reason"] == f"downloaded from s3://{bucket}/lwdp"
    _assert_explain_agrees_with_the_run(run)
    # Downloaded: now in Bob's own cache.
    later = _explained(bob.run(env=env))["stg_scale"]
    assert later.startswith("stage pipeline.stg_scale: fresh (cached as ") and "shared store" not in later


def test_changed_raw_input_is_named_with_its_path(chain):
    chain.write("raw/in.csv", "v\n1\n3\n")
    run = chain.run()
    expected = {
        "stg_read": "raw input `src` (raw/in.csv) content changed",
        "stg_scale": "upstream `raw` changed (stage stg_read)",
    }
    assert _explained(run) == {name: f"stage pipeline.{name}: stale: {why}" for name, why in expected.items()}
    assert _reasons(run) == expected
    _assert_explain_agrees_with_the_run(run)


def test_deleted_or_corrupt_artifact_is_named(chain):
    (artifact,) = [p for p in (chain.cache_dir / "artifacts").rglob("*.parquet") if "stg_scale" in _stage_of(chain, p)]
    artifact.write_bytes(artifact.read_bytes()[:-10])
    run = chain.run()
    corrupt = "artifact corrupt (size or checksum mismatch)"
    assert _explained(run)["stg_scale"] == f"stage pipeline.stg_scale: stale: {corrupt}"  # the run's own reason
    assert _reasons(run) == {"stg_scale": corrupt}
    _assert_explain_agrees_with_the_run(run)


def _stage_of(project, artifact) -> str:
    return project.sql("SELECT stage FROM artifacts WHERE hash = ?", artifact.name.split(".")[0])[0][0]


def test_a_result_evicted_by_gc_is_named(chain):
    lwdp.store.gc(max_size=0, cache_dir=chain.cache_dir)
    run = chain.run()
    gone = "its result was cached before and is gone (evicted by gc or deleted)"
    assert _explained(run)["stg_scale"] == f"stage pipeline.stg_scale: stale: {gone}"
    assert _reasons(run) == {"stg_read": gone, "stg_scale": gone}
    _assert_explain_agrees_with_the_run(run)


def test_explanations_survive_a_lost_catalog(chain):
    """The stage manifest is also beside each artifact: a rebuilt catalog adopts it."""
    (chain.cache_dir / "catalog.sqlite").unlink()
    assert chain.run().outcomes() == {"stg_read": "not-needed", "stg_scale": "hit"}  # adopted
    chain.write("pipeline.py", CHAIN.replace("factor=2", "factor=3"))
    assert _explained(chain.run())["stg_scale"] == "stage pipeline.stg_scale: stale: parameter `factor` changed 2 → 3"


# -- hash_packages: a package's version becomes part of every stage hash ----------------------


def _install_fake_package(project, version: str) -> None:
    """A real installed distribution as importlib.metadata sees it (the script's directory is
    on sys.path), at ``version``."""
    for old in project.root.glob("fakepkg-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    project.write(f"fakepkg-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")


def test_hash_packages_makes_a_version_change_invalidate(project):
    project.write("raw/in.csv", "v\n1\n")
    project.write("pipeline.py", CHAIN)
    _install_fake_package(project, "1.0")
    assert project.run("pipeline.py", "fakepkg").ran() == {"stg_read", "stg_scale"}
    assert project.run("pipeline.py", "fakepkg").ran() == set()
    _install_fake_package(project, "2.0")
    upgraded = project.run("pipeline.py", "fakepkg")
    assert _reasons(upgraded) == {
        "stg_read": "package `fakepkg` changed 1.0 → 2.0",
        "stg_scale": "package `fakepkg` changed 1.0 → 2.0; upstream `raw` changed (stage stg_read)",
    }
    # The same through the environment; without it, versions don't count.
    assert project.run("pipeline.py", env={"LWDP_HASH_PACKAGES": "fakepkg"}).ran() == set()
    _install_fake_package(project, "3.0")
    assert project.run("pipeline.py").ran() == {"stg_read", "stg_scale"}  # first run without packages
    assert project.run("pipeline.py").ran() == set()
    _install_fake_package(project, "4.0")
    assert project.run("pipeline.py").ran() == set()


def test_hash_packages_names_an_unknown_package(project):
    with pytest.raises(UnknownPackageError, match="no installed package is named 'no-such-package-xyz'.*pip list") as caught:
        lwdp.configure(hash_packages=["no-such-package-xyz"])
    assert isinstance(caught.value, LookupError)
    lwdp.configure(hash_packages=None)


def test_configure_changes_only_the_options_it_is_given(project):
    lwdp.configure(cache_dir="elsewhere")
    lwdp.configure(hash_packages=["pandas"])
    try:
        assert lwdp.config.cache_dir() == project.root / "elsewhere"
        assert list(lwdp.config.settings().package_versions()) == ["pandas"]
    finally:
        lwdp.configure(cache_dir=None, hash_packages=None)


# -- stages without a source file ------------------------------------------------------------

EXEC_PIPELINE = '''
import logging
logging.getLogger("lwdp").addHandler(logging.StreamHandler())
SOURCE = """
import pandas as pd
from lwdp import stage

def double(x):
    return x * FACTOR

FACTOR = 2

@stage(n=3, cache=True)
def from_exec(n):
    return pd.DataFrame({"v": [double(n)]})
"""
namespace = {"__name__": "generated"}
exec(compile(SOURCE, "<generated>", "exec"), namespace)
print("RESULT", namespace["from_exec"]().v[0])
'''


def test_a_stage_from_exec_of_source_without_a_file_caches_and_hits(project):
    project.write("pipeline.py", EXEC_PIPELINE)
    cold = project.run()
    assert cold.ran() == {"from_exec"} and "RESULT 6" in cold.stdout
    assert "no parsable source for generated.from_exec; hashing its bytecode instead" in cold.stderr
    warm = project.run()
    assert warm.outcomes() == {"from_exec": "hit"} and "RESULT 6" in warm.stdout
    project.write("pipeline.py", EXEC_PIPELINE.replace("FACTOR = 2", "FACTOR = 5"))
    edited = project.run()
    assert edited.ran() == {"from_exec"} and "RESULT 15" in edited.stdout
    assert _reasons(edited) == {"from_exec": "module constant `FACTOR` changed (in helper `double` in <generated>)"}


def _python_c(project, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=project.root, capture_output=True, text=True, timeout=120, check=True,
    )


def test_a_stage_from_python_c_caches_and_hits(project):
    code = '''
        import logging
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from lwdp import stage

        @stage(n=3, cache=True)
        def inline(n):
            return n + 1

        print("RESULT", inline())
    '''
    cold = _python_c(project, code)
    assert "RESULT 4" in cold.stdout and "stage __main__.inline: computed" in cold.stderr
    assert "no parsable source for __main__.inline" in cold.stderr
    warm = _python_c(project, code)
    assert "RESULT 4" in warm.stdout and "stage __main__.inline: cache hit" in warm.stderr


NOTEBOOK = '''
import logging
import sys
from IPython.core.interactiveshell import InteractiveShell

logging.basicConfig(level=logging.INFO, format="%(message)s")
shell = InteractiveShell.instance()
CELLS = [
    "from lwdp import stage\\nimport pandas as pd",
    "def helper(x):\\n    return x * 2",
    "@stage(n=3, cache=True)\\ndef from_cell(n):\\n    # a comment\\n    return pd.DataFrame({'v': [helper(n)]})",
    "print('EXPLAIN', from_cell.explain())\\nprint('RESULT', from_cell().v[0])",
]
for cell in CELLS:
    shell.run_cell(cell).raise_error()
'''


def test_a_stage_defined_in_ipython_cells_caches_hits_and_explains(project):
    pytest.importorskip("IPython", reason="ipython is in the test extra")
    project.write("notebook.py", NOTEBOOK)

    def run(source: str) -> subprocess.CompletedProcess[str]:
        project.write("notebook.py", source)
        return subprocess.run(
            [sys.executable, "notebook.py"], cwd=project.root, capture_output=True, text=True, timeout=120, check=True,
        )

    cold = run(NOTEBOOK)
    assert "RESULT 6" in cold.stdout and "stage __main__.from_cell: computed" in cold.stderr
    assert "no parsable source" not in cold.stderr  # IPython keeps each cell's source
    reformatted = run(NOTEBOOK.replace("    # a comment\\n", ""))
    assert "RESULT 6" in reformatted.stdout and "stage __main__.from_cell: cache hit" in reformatted.stderr
    assert "EXPLAIN stage __main__.from_cell: fresh" in reformatted.stdout
    edited = run(NOTEBOOK.replace("return x * 2", "return x * 3"))
    assert "EXPLAIN stage __main__.from_cell: stale: helper `helper` in an IPython cell changed" in edited.stdout
    assert "RESULT 9" in edited.stdout
    assert "stage __main__.from_cell: computed" in edited.stderr and "(helper `helper` in an IPython cell changed)" in edited.stderr
