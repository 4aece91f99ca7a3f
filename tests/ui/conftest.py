"""Fixtures for the browser tests: a real `jupyter lab` in a temporary root, and Debian's Chromium
driven by Python Playwright (never `playwright install`: nothing may download a browser here)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("JUPYTER_PIPELINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where scripts/test installs everything."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`jupyter lab` on a free port with a token, serving a temp root holding digits.ipynb."""
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    _require((REPO / "jupyter_pipeline" / "labextension" / "package.json").exists(),
             "the labextension is not built (jlpm install && jlpm build)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    shutil.copy(REPO / "examples" / "digits" / "digits.ipynb", root / "digits.ipynb")
    # No "fetch Jupyter news?" toast over the page, no update check.
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), uuid.uuid4().hex
    env = {**os.environ, "JUPYTER_PIPELINE_STORE": str(base / "store"), "JUPYTER_PIPELINE_MAX_RUNS": "2"}
    env.pop("JUPYTER_PIPELINE_KFP_HOST", None)
    log = open(base / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={base / 'settings'}",
         f"--LabApp.workspaces_dir={base / 'workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/jupyter-pipeline/config?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("jupyter lab did not start:\n" + (base / "lab.log").read_text()[-3000:])
        time.sleep(0.3)
    yield {"url": url, "token": token, "root": root, "log": base / "lab.log", "store": base / "store"}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(lab, browser, artifacts):
    """One page for the module, on digits.ipynb with the Pipeline sidebar open."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # no video: needs ffmpeg
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{lab['url']}/lab/tree/digits.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    tab = page.locator('.jp-SideBar [data-id="jupyter-pipeline-sidebar"]')
    tab.click()
    page.wait_for_selector("#jupyter-pipeline-sidebar .jp-pipeline-graph")
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    if errors:
        (artifacts / "page-errors.txt").write_text("\n".join(errors))
    context.close()
