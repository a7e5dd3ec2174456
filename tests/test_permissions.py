"""Permission errors done for real: the pipeline runs without root's power over file modes."""

import stat

READ = '''
import pandas as pd
from lwdp import stage

@stage(src="raw/input.csv", cache=True)
def stg_read(src):
    return pd.read_csv(src)

print(stg_read()["v"].sum())
'''


def test_unreadable_raw_file_is_a_clear_permission_error(project):
    raw = project.write("raw/input.csv", "v\n1\n2\n")
    project.write("pipeline.py", READ)
    raw.chmod(0)
    failed = project.run(check=False, honour_permissions=True)
    assert failed.returncode != 0
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("lwdp.errors.RawInputUnreadableError:")
    for words in ("pipeline.stg_read", "'src'", "raw/input.csv", "permissions"):
        assert words in last
    raw.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert project.run(honour_permissions=True).stdout.strip() == "3"


def test_cache_directory_that_is_not_writable(project):
    project.write("raw/input.csv", "v\n1\n2\n")
    project.write("pipeline.py", READ)
    assert project.run(honour_permissions=True).stdout.strip() == "3"  # cached
    project.write("raw/input.csv", "v\n1\n5\n")  # the next run must write a new artifact
    artifacts = project.cache_dir / "artifacts"
    for directory in [project.cache_dir, artifacts, *artifacts.iterdir()]:
        directory.chmod(0o555)
    try:
        failed = project.run(check=False, honour_permissions=True)
    finally:
        for directory in [project.cache_dir, artifacts, *artifacts.iterdir()]:
            directory.chmod(0o755)
    assert failed.returncode != 0
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(("lwdp.errors.CacheDirError:", "lwdp.errors.ArtifactWriteError:")), last
    assert str(project.cache_dir) in last
    # Nothing already cached was lost: the old artifact still serves the old content.
    project.write("raw/input.csv", "v\n1\n2\n")
    again = project.run(honour_permissions=True)
    assert again.outcomes() == {"stg_read": "hit"}
    assert again.stdout.strip() == "3"
