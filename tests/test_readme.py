"""The README's promises that a test can hold it to."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import copy_example

REPO = Path(__file__).resolve().parents[1]


def shell_blocks() -> list[str]:
    """The README's shell blocks: the two set-up commands come first."""
    return re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_word_for_word():
    [_, test_command, *_] = shell_blocks()
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_ci_runs_both_readme_commands_in_order_before_its_own():
    """Regression (issue 12, bug 5): the tests passed alone and failed after the quickstart."""
    quickstart, test_command, *_ = shell_blocks()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert quickstart in ci and test_command in ci
    assert ci.index(quickstart) < ci.index(test_command)


def _run_quickstart_twice(example: Path) -> list[subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    return [
        subprocess.run([sys.executable, "pipeline.py"], cwd=example, env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]


def test_quickstart_second_run_is_all_from_cache(tmp_path):
    """What the README's first command does after installing: run the quickstart twice.
    Its log shows lwdp's stage lines and nothing of lwdp's internals (regression, issue 12
    bug 6: five Alembic "Running upgrade" lines came first)."""
    [quickstart, _, *_] = shell_blocks()
    assert quickstart.count("python pipeline.py") == 2 and "cd examples/quickstart" in quickstart
    runs = _run_quickstart_twice(copy_example("quickstart", tmp_path / "quickstart"))
    first_lines = runs[0].stderr.splitlines()
    assert first_lines and all(line.startswith("lwdp INFO stage") for line in first_lines), runs[0].stderr
    assert "computed" in runs[0].stderr and "cache hit" not in runs[0].stderr
    stage_lines = [line for line in runs[1].stderr.splitlines() if line.startswith("lwdp INFO stage")]
    assert len(stage_lines) == 5
    assert not [line for line in stage_lines if "computed" in line]
    assert runs[0].stdout == runs[1].stdout and "total revenue" in runs[1].stdout


def test_a_users_earlier_run_of_the_example_leaves_the_tests_cold(tmp_path):
    """Regression (issue 12, bug 5): the README's first command leaves the example's cache
    in the tree, and the tests copied it, so their "cold" runs were warm."""
    checkout = tmp_path / "checkout"
    _run_quickstart_twice(copy_example("quickstart", checkout / "quickstart"))
    assert (checkout / "quickstart" / ".lwdp").is_dir()
    fresh = copy_example("quickstart", tmp_path / "fresh", examples=checkout)
    first = _run_quickstart_twice(fresh)[0].stderr
    assert first.count("computed") == 5 and "cache hit" not in first


def test_the_only_what_changed_example_does_what_its_docstring_says(tmp_path):
    """examples/only_what_changed: partitions, a version pin and a recompute, as a user runs it."""
    example = copy_example("only_what_changed", tmp_path / "example")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}

    def computed(*args: str) -> list[str]:
        run = subprocess.run([sys.executable, "pipeline.py", *args], cwd=example, env=env, capture_output=True, text=True, check=True)
        assert "WARNING" not in run.stderr, run.stderr
        return sorted(re.findall(r"stage pipeline\.(\S+): computed \w+ in [\d.]+ s, cached", run.stderr))

    partitions = ["stg_orders[raw/orders/2026-10.csv]", "stg_orders[raw/orders/2026-11.csv]"]
    assert computed() == sorted([*partitions, "stg_report", "stg_totals"])
    assert computed() == []
    with open(example / "raw/orders/2026-11.csv", "a") as orders:
        orders.write("B3,P1,5\n")
    assert computed() == ["stg_orders[raw/orders/2026-11.csv]", "stg_report", "stg_totals"]
    assert computed("--recompute") == ["stg_totals"]  # the same totals: the report stays cached
