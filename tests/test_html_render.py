"""R3/R5: the HTML report renders its charts in a real browser (headless Chromium), with no
kernel and no JavaScript: the charts are PNG images embedded in the page."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from report_support import executed_reports

from mailops.charts import INBOUND

pytestmark = pytest.mark.notebook

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def ran(tmp_path_factory):
    return executed_reports(tmp_path_factory.mktemp("notebooks"))


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def test_R3_html_embeds_charts_as_png(ran):
    html = ran["activity_report"].html_path.read_text()
    images = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=\s]+)"', html)
    assert len(images) >= 4  # per sales person, per week, per customer, response times
    png = base64.b64decode(images[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/install-system-deps.sh)"
)
def test_R3_chromium_screenshot_shows_the_charts(ran, tmp_path):
    html = ran["activity_report"].html_path
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    px = np.asarray(img, dtype=np.int16)
    non_white = float((px.sum(axis=2) < 720).mean())
    assert non_white > 0.02, "the screenshot is blank"
    # the inbound bars' colour is on screen: the charts were drawn, not just their tables
    bars = int((np.abs(px - np.array(_hex(INBOUND))).max(axis=2) <= 6).sum())
    assert bars > 2000, f"only {bars} chart pixels in the screenshot"
