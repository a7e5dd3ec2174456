"""The 30-stage DAG with Hamilton's `.with_cache()`."""

from __future__ import annotations

from hamilton import driver

import common
import downstream
import hamilton_nodes


def main() -> None:
    cache_dir, out = common.cli()
    dr = driver.Builder().with_modules(hamilton_nodes, downstream).with_cache(path=cache_dir).build()
    inputs: dict[str, object] = {}
    for i, path in enumerate(common.raw_files()):
        mtime_ns, size = common.file_stamp(path)
        inputs |= {f"src_{i:02d}": path, f"mtime_ns_{i:02d}": mtime_ns, f"size_{i:02d}": size}
    common.write_result(dr.execute(["final"], inputs=inputs)["final"], out)


if __name__ == "__main__":
    main()
