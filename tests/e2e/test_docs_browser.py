"""GET /docs in a real browser: headless Debian chromium loads Swagger UI from the API's own files
(no CDN: the browser runs with background networking off and only reaches the API) and renders
every main operation from /openapi.json. The screenshot is kept in test-artifacts/docs.png."""
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.integration.observed_stack import start_api

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"
MAIN_OPERATIONS = ["/auth/register", "/auth/token", "/shows", "/shows/{show_id}", "/bookings",
                   "/bookings/{booking_id}", "/bookings/{booking_id}/cancel", "/bookings/{booking_id}/ticket",
                   "/me/bookings"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: CI must install Debian's chromium (apt-get install chromium) "
                    "for the docs browser check")
    pytest.skip("install Debian's chromium to run the browser check")


@pytest.fixture(scope="module")
def docs_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs-api")
    api, url = start_api(folder, {}, name="docs-api", workers=1)
    yield url + "/docs"
    api.stop()


def _browse(chromium: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--user-data-dir={profile}", "--window-size=1280,2400",
            "--virtual-time-budget=15000", *extra, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def test_docs_page_renders_every_main_operation(chromium, docs_url, tmp_path):
    dom = _browse(chromium, tmp_path / "profile-dom", docs_url, "--dump-dom")
    html = dom.stdout
    assert dom.returncode == 0 and html, dom.stderr[-2000:]
    assert 'class="swagger-ui' in html, html[:2000]
    assert html.count("opblock-summary-path") >= len(MAIN_OPERATIONS), "Swagger UI rendered no operation blocks"
    for path in MAIN_OPERATIONS:
        assert f'data-path="{path}"' in html, f"{path} is not on the docs page"
    for method in ("opblock-get", "opblock-post", "opblock-patch"):
        assert method in html
    assert "Failed to load API definition" not in html
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets), assets
    outside = [a for a in assets if re.match(r"(https?:)?//", a) and not a.startswith(docs_url.split("/docs")[0])]
    assert not outside, f"the docs page loads files from elsewhere: {outside}"

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs.png"
    screenshot.unlink(missing_ok=True)
    shot = _browse(chromium, tmp_path / "profile-shot", docs_url, f"--screenshot={screenshot}", "--hide-scrollbars")
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2400), (width, height)
    assert len(data) > 50_000, f"the screenshot is nearly empty ({len(data)} bytes)"
