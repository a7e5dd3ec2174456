"""The README's promises that a test can hold it to."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shell_blocks() -> list[str]:
    """The README's shell blocks: the two set-up commands come first."""
    return re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_word_for_word():
    [_, test_command, *_] = shell_blocks()
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_quickstart_second_run_is_all_from_cache(tmp_path):
    """What the README's first command does after installing: run the quickstart twice."""
    [quickstart, _, *_] = shell_blocks()
    assert quickstart.count("python pipeline.py") == 2 and "cd examples/quickstart" in quickstart
    example = shutil.copytree(REPO / "examples" / "quickstart", tmp_path / "quickstart")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    runs = [
        subprocess.run([sys.executable, "pipeline.py"], cwd=example, env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert "computed" in runs[0].stderr and "cache hit" not in runs[0].stderr
    stage_lines = [line for line in runs[1].stderr.splitlines() if line.startswith("lwdp INFO stage")]
    assert len(stage_lines) == 5
    assert not [line for line in stage_lines if "computed" in line]
    assert runs[0].stdout == runs[1].stdout and "total revenue" in runs[1].stdout
