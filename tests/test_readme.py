"""The README's promises that a test can hold it to."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_word_for_word():
    [_, test_command] = shell_blocks()
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text().splitlines()


def test_quickstart_command_runs_the_shipped_pipeline_twice():
    [quickstart, _] = shell_blocks()
    assert quickstart.count("python pipeline.py") == 2
    assert (REPO / "examples" / "quickstart" / "pipeline.py").is_file()
    assert len(list((REPO / "examples" / "quickstart" / "raw").glob("*.csv"))) >= 3
