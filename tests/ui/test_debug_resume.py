"""From a failed stage to a fix in JupyterLab: publish a run whose stage fails, "Debug in a notebook"
(the debug notebook opens with its inputs loaded; running the stage's cell shows the same error), fix the
cause, "Resume": the run succeeds with the stage that had succeeded kept, and a notification says so;
"Re-run from here", then "Compare runs". Screenshots go to tests/ui/artifacts/ (debug-notebook-*.png,
resumed-*.png, compare-*.png)."""

from __future__ import annotations

import pytest

from test_debug import write_flow
from test_lab import SIDEBAR, node, shot

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def test_debug_a_failed_stage_in_a_notebook_then_resume_the_run(page, lab, artifacts):
    write_flow(lab["root"])  # stage `use` fails while fail.flag exists
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', {path: 'flow.ipynb'})")
    node(page, "use").wait_for(timeout=20_000)
    page.locator(f"{SIDEBAR} button.jp-pipeline-publish").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("#jp-pipeline-reuse").wait_for()  # the local target reuses stages
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")
    run = page.locator(f"{SIDEBAR} .jp-pipeline-run").first
    run.wait_for(timeout=15_000)
    page.wait_for_function(
        f"() => ['failed'].includes(document.querySelector('{SIDEBAR} .jp-pipeline-run')?.dataset.status)",
        timeout=180_000, polling=500)
    run_id = run.get_attribute("data-run-id")
    use_row = run.locator('.jp-pipeline-stage-row[data-stage="use"]')
    assert use_row.get_attribute("data-status") == "failed"
    toast = page.locator(".jp-Notification-Toast, .Toastify__toast", has_text=f"run {run_id}")
    toast.first.wait_for(timeout=15_000)  # the run started here ended: a notification says how
    assert "failed" in toast.first.inner_text() and "stage use failed" in toast.first.inner_text()

    # The executed notebook: the user's cells and the error, scrolled to; no plumbing, no banners.
    use_row.locator(".jp-pipeline-open-notebook").click()
    view = page.locator(".jp-pipeline-stage-view:visible")
    failure = view.locator(".jp-OutputArea-output", has_text="boom with total 48")
    failure.wait_for(timeout=20_000)
    page.wait_for_timeout(500)  # the scroll to the error
    assert failure.is_visible() and failure.bounding_box()["y"] < 900
    text = view.inner_text()
    assert "_jp_io" not in text and "An Exception was encountered" not in text and "_jp_run" not in text
    assert "generated cells of the runner hidden" in view.locator(".jp-pipeline-stage-view-note").inner_text()
    shot(page, artifacts, "failed-stage-notebook")
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"use · {run_id}").locator(
        ".lm-TabBar-tabCloseIcon").click()

    # Debug: the notebook opens, its parameters/setup/inputs cells ran; the stage's cell fails the same way.
    run.locator("button.jp-pipeline-debug-stage").last.click()
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path === 'flow-debug-use.ipynb'; }", timeout=30_000)
    debug_nb = page.locator(".jp-NotebookPanel:visible .jp-Notebook")
    inputs = debug_nb.locator(".jp-Cell").nth(3)
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; const c = w.content.widgets[3];"
        " return c && c.model.executionCount !== null && c.model.executionCount > 0; }", timeout=90_000)
    assert "load_inputs(" in inputs.inner_text()
    code = debug_nb.locator(".jp-Cell").nth(4)  # header, parameters, setup, inputs, then the stage's code
    code.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    error = code.locator(".jp-OutputArea-output", has_text="ValueError")
    try:
        error.wait_for(timeout=60_000)
    finally:
        shot(page, artifacts, "debug-notebook")
    assert "boom with total 48" in error.inner_text()
    assert page.locator(f"{SIDEBAR} .jp-pipeline-severity-warning").count() == 0  # no unknown setting

    # Fixed: Resume on the failed run keeps `make` and re-runs `use`.
    (lab["root"] / "fail.flag").unlink()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="flow.ipynb").first.click()
    page.wait_for_function(
        "() => document.querySelector('#jupyter-pipeline-sidebar .jp-pipeline-title')?.textContent.startsWith('flow')")
    run = page.locator(f"{SIDEBAR} .jp-pipeline-run[data-run-id='{run_id}']")
    assert run.locator(".jp-pipeline-run-toggle").get_attribute("aria-expanded") == "true"  # kept across notebooks
    make_time = run.locator('.jp-pipeline-stage-row[data-stage="make"] .jp-pipeline-time').inner_text()
    run.locator("button.jp-pipeline-resume").click()
    page.wait_for_function(
        f"() => document.querySelector(`{SIDEBAR} .jp-pipeline-run[data-run-id='{run_id}']`)?.dataset.status"
        " === 'succeeded'", timeout=180_000, polling=500)
    assert run.locator('.jp-pipeline-stage-row[data-stage="use"]').get_attribute("data-status") == "succeeded"
    assert run.locator('.jp-pipeline-stage-row[data-stage="make"] .jp-pipeline-time').inner_text() == make_time
    assert run.locator("button.jp-pipeline-resume").count() == 0
    assert run.locator("button.jp-pipeline-rerun-from").count() == 2  # on each stage
    done = page.locator(".jp-Notification-Toast, .Toastify__toast", has_text="succeeded")
    done.first.wait_for(timeout=15_000)
    shot(page, artifacts, "resumed")

    # Re-run from `use`: a new run, `make` reused; then compare the two runs.
    run.locator('.jp-pipeline-stage-row[data-stage="use"] + tr button.jp-pipeline-rerun-from').click()
    page.wait_for_function(f"() => document.querySelectorAll('{SIDEBAR} .jp-pipeline-run').length === 2")
    page.wait_for_function(
        f"() => document.querySelector('{SIDEBAR} .jp-pipeline-run')?.dataset.status === 'succeeded'",
        timeout=180_000, polling=500)
    page.locator(f"{SIDEBAR} button.jp-pipeline-compare-runs").click()
    table = page.locator(".jp-pipeline-compare-table:visible")
    table.wait_for(timeout=15_000)
    assert table.locator("tbody tr").count() == 2
    assert table.locator(f"tbody tr[data-run-id='{run_id}']").count() == 1
    assert "scale" in table.locator("thead").inner_text() and "total" in table.locator("thead").inner_text()
    assert table.locator("td.jp-pipeline-best").count() == 1 and "★" in table.locator("td.jp-pipeline-best").inner_text()
    page.locator(".jp-pipeline-compare-x:visible").select_option(label="time")
    assert page.locator(".jp-pipeline-compare-chart:visible circle").count() == 2
    shot(page, artifacts, "compare")
