"""The pipeline as a picture (issue 19): ``lwdp report`` writes one self-contained HTML page,
loaded here in a real browser (Debian's headless Chromium through its ChromeDriver) with no
network; and in Jupyter a stage displays as the same picture."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from conftest import copy_example
from services import service_missing

STAGES = ["stg_read_orders", "stg_read_products", "stg_priced_orders", "stg_daily_revenue", "stg_report"]
STATE_FILLS = {"fresh": (0xE6, 0xF6, 0xEA), "stale": (0xFF, 0xF0, 0xDC)}


def _lwdp(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWDP_")}
    return subprocess.run([sys.executable, "-m", "lwdp", *args], cwd=root, capture_output=True, text=True, env=env)


@pytest.fixture
def quickstart_report(project) -> Path:
    """The quickstart run twice, then edited (a parameter of stg_daily_revenue), and its report."""
    copy_example("quickstart", project.root)
    project.run()
    project.run()
    project.edit("pipeline.py", (project.root / "pipeline.py").read_text().replace("min_qty=1", "min_qty=2"))
    done = _lwdp(project.root, "report", "pipeline:stg_report", "-o", "report.html")
    assert done.returncode == 0 and "wrote report.html" in done.stdout, done.stderr
    return project.root / "report.html"


def test_the_report_is_one_page_that_needs_nothing_else(quickstart_report):
    page = quickstart_report.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # nothing fetched at view time
    for name in STAGES:
        assert name in page
    assert "raw/orders_*.csv" in page and "raw/products.csv" in page
    assert "why: parameter `min_qty` changed 1 → 2" in page
    assert page.count(">fresh<") == 3 and page.count(">stale<") == 2


def test_a_partitioned_stage_is_one_box_with_its_partitions_states(project):
    copy_example("only_what_changed", project.root)
    project.run()
    with open(project.root / "raw" / "orders" / "2026-11.csv", "a") as orders:
        orders.write("B3,P1,5\n")
    assert _lwdp(project.root, "report", "pipeline:stg_report").returncode == 0
    page = (project.root / "report.html").read_text()
    assert "raw/orders/*.csv" in page and "2026-10.csv]" not in page  # the glob, not a box per file
    assert "2 partitions: 1 fresh, 1 stale" in page and "why: partition raw/orders/2026-11.csv: content changed" in page


def _browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        service_missing("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,700", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGBA rows of an 8-bit RGB(A) PNG, as Chromium writes screenshots."""
    chunks, position = {}, 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        chunks.setdefault(kind, []).append(png[position + 8:position + 8 + length])
        position += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and color in (2, 6)
    channels = 4 if color == 6 else 3
    raw, stride, rows, previous = zlib.decompress(b"".join(chunks[b"IDAT"])), width * channels, [], bytes(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                guess = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[i] = (line[i] + guess) & 255
        previous = bytes(line)
        rows.append(bytes(line) if channels == 4 else b"".join(line[i:i + 3] + b"\xff" for i in range(0, stride, 3)))
    return width, height, rows


def test_the_report_renders_in_chromium_without_errors_and_shows_every_stage(quickstart_report, tmp_path):
    browser = _browser()
    try:
        browser.get(quickstart_report.as_uri())
        errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        text = browser.execute_script("return document.body.innerText")
        for name in [*STAGES, "raw/orders_*.csv", "raw/products.csv", "Runs of this stage"]:
            assert name in text
        boxes = browser.execute_script(
            "return [...document.querySelectorAll('.lwdp-node')].map(n => {const r = n.getBoundingClientRect();"
            " return [n.querySelector('.lwdp-name, .lwdp-path').innerText, n.querySelector('.lwdp-state')?.innerText,"
            " r.left, r.top, r.width, r.height]})"
        )
        shot = browser.get_screenshot_as_png()
    finally:
        browser.quit()
    (tmp_path / "report.png").write_bytes(shot)
    assert sorted(name for name, *_ in boxes) == sorted([*STAGES, "raw/orders_*.csv", "raw/products.csv"])
    width, height, rows = _pixels(shot)
    for name, state, left, top, box_width, box_height in boxes:
        assert 0 <= left and left + box_width <= width and 0 <= top and top + box_height <= height, name  # on screen
        if state is None:
            continue
        # The box is drawn in its state's colour: sample inside it, below its text.
        x, y = int(left + box_width - 12), int(top + box_height - 10)
        assert tuple(rows[y][4 * x:4 * x + 3]) == STATE_FILLS[state], (name, state)
    lefts = sorted({round(left) for _, _, left, *_ in boxes})
    assert len(lefts) == 5  # raw inputs, the two readers, the join, the daily revenue, the report


JUPYTER = """
from IPython.core.interactiveshell import InteractiveShell

import pipeline

shell = InteractiveShell.instance()
data, _ = shell.display_formatter.format(pipeline.stg_report)
print("MIME", sorted(data))
print("HTML", data["text/html"])
"""


def test_a_stage_shows_its_pipeline_in_jupyter(project):
    copy_example("quickstart", project.root)
    project.run()
    project.write("notebook.py", JUPYTER)
    shown = project.run("notebook.py").stdout
    assert "MIME ['text/html', 'text/plain']" in shown
    html = shown.split("HTML ", 1)[1]
    assert html.startswith('<div class="lwdp-report">') and "<html" not in html
    assert all(name in html for name in STAGES) and html.count(">fresh<") == 5
