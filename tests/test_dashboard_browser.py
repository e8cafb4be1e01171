"""optuna-dashboard in a real browser: headless Chromium on loopback, no training.

The study is the one of ``test_dashboard.py`` (four trials with strips, stage profiles, a
hypervolume figure and a note). The dashboard runs in a thread on 127.0.0.1 and a free port;
Chromium renders the React app with ``--dump-dom`` and ``--screenshot``. Skipped where
``/usr/bin/chromium`` is missing (``.ci/run`` installs Debian's ``chromium``). Set
``VRTSPIKE_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from search.report.dashboard import serve
from search.study.record import PROFILE_SUFFIX, STRIP_SUFFIX
from search.study.storage import StorageURL

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """(base URL, study id, work folder) of a dashboard serving in a background thread."""
    from test_dashboard import make_study  # the same study as the WSGI tests

    root = tmp_path_factory.mktemp("browser")
    url, study = make_study(root)
    server = serve(StorageURL.parse(url), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", study._study_id, root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium(root: Path, *args: str) -> str:
    """Run headless Chromium with a throw-away profile; returns stdout."""
    profile = root / "chromium-profile"
    result = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _card(dom: str, heading: str, element_id: str) -> str:
    """The DOM text from ``heading`` through the plot ``element_id`` up to the next plot."""
    plot = dom.index(f'id="{element_id}"')
    start = dom.rindex(heading, 0, plot)
    end = dom.find('id="graph-', plot + 1)
    return dom[start : end if end > 0 else len(dom)]


def test_pareto_plot_rendered(dashboard: tuple[str, int, Path]) -> None:
    base, study_id, root = dashboard
    dom = chromium(root, "--dump-dom", f"{base}/dashboard/studies/{study_id}")
    assert 'id="graph-pareto-front"' in dom, dom[:500]
    card = _card(dom, "Pareto Front", "graph-pareto-front")
    # the metric names label the axes (the card's "Objective X" / "Objective Y" selectors)
    assert re.search(r"Objective X:.*>latency_ms<.*Objective Y:.*>psnr_db<", card, re.S)
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", card)
    assert {"20", "100", "28", "31"} <= set(ticks)  # latency 20-100 ms, PSNR 28-31 dB
    assert card.count('class="point"') >= 4  # a marker per completed trial
    assert re.search(r'<img[^>]*alt="hypervolume_4trials\.png"', dom)  # study artifact shown


def test_trial_images_rendered(dashboard: tuple[str, int, Path]) -> None:
    base, study_id, root = dashboard
    dom = chromium(root, "--dump-dom", f"{base}/dashboard/studies/{study_id}/trials")
    imgs = dict(re.findall(r'<img[^>]*alt="([^"]+)"[^>]*src="([^"]+)"', dom))
    strip = f"trial0{STRIP_SUFFIX}.png"
    assert strip in imgs and f"trial0{PROFILE_SUFFIX}.png" in imgs, sorted(imgs)
    with urllib.request.urlopen(base + imgs[strip], timeout=10) as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.read().startswith(b"\x89PNG")


def test_screenshot(dashboard: tuple[str, int, Path]) -> None:
    base, study_id, root = dashboard
    keep = os.environ.get("VRTSPIKE_SCREENSHOT_DIR")
    out = Path(keep) if keep else root
    out.mkdir(parents=True, exist_ok=True)
    shots = {
        "dashboard_study.png": f"{base}/dashboard/studies/{study_id}",
        "dashboard_trials.png": f"{base}/dashboard/studies/{study_id}/trials",
    }
    for name, page in shots.items():
        chromium(root, f"--screenshot={out / name}", "--window-size=1400,1400", page)
        with Image.open(out / name) as img:
            assert img.size == (1400, 1400)
            colours = img.convert("RGB").resize((140, 140)).getcolors(maxcolors=140 * 140)
            assert colours is not None and len(colours) > 50  # not a blank page
