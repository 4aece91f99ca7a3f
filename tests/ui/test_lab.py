"""The JupyterLab extension in a real JupyterLab and Chromium, against the real server extension.

The tests share one page and run in file order, as a user would: look at the graph, tag a cell,
break the pipeline with a cycle and fix it, publish a local run, open a stage's notebook.
"""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow]

SIDEBAR = "#jupyter-pipeline-sidebar"
DIGITS_STAGES = ["load", "preprocess", "train", "evaluate", "register"]


def node(page, stage):
    return page.locator(f'{SIDEBAR} .jp-pipeline-node[data-stage="{stage}"]')


def cell(page, index):
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)


def select_cell(page, index):
    cell(page, index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")


def apply_editor(page, *, role=None, name=None, after=None, uncheck=None):
    editor = page.locator(f"{SIDEBAR} .jp-pipeline-editor")
    if role:
        editor.locator("select.jp-pipeline-role").select_option(role)
    if name is not None:
        editor.locator("input.jp-pipeline-stage-name").fill(name)
    for stage in after or []:
        editor.locator(f'.jp-pipeline-after input[value="{stage}"]').check()
    for stage in uncheck or []:
        editor.locator(f'.jp-pipeline-after input[value="{stage}"]').uncheck()
    editor.locator("button.jp-pipeline-apply").click()


def saved_tags(lab, index):
    nb = json.loads((lab["root"] / "digits.ipynb").read_text())
    return nb["cells"][index]["metadata"].get("tags", [])


def save(page, lab):
    """Save the notebook and wait for the file on disk to change."""
    path = lab["root"] / "digits.ipynb"
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 15
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.1)
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", state="detached", timeout=10_000)


def test_graph_shows_the_stages(page, artifacts):
    for stage in DIGITS_STAGES:
        node(page, stage).wait_for()
    # train is tagged gpu:1
    assert node(page, "train").locator(".jp-pipeline-gpu-badge").count() == 1
    assert node(page, "load").locator(".jp-pipeline-gpu-badge").count() == 0
    edges = page.locator(f"{SIDEBAR} .jp-pipeline-edge")
    assert {edges.nth(i).get_attribute("data-edge") for i in range(edges.count())} >= {
        "load->preprocess", "preprocess->train", "train->evaluate"}
    params = page.locator(f"{SIDEBAR} .jp-pipeline-params th").all_inner_texts()
    assert params == ["epochs", "learning_rate", "hidden_units", "test_size", "seed"]
    # Every stage cell carries its chip.
    assert page.locator('.jp-pipeline-cell-chip[data-stage="train"]').count() == 1
    # Clicking a node selects the stage's first cell.
    node(page, "evaluate").click()
    page.wait_for_function(
        "() => document.querySelector('.jp-Cell.jp-mod-active .jp-pipeline-cell-chip')?.dataset.stage === 'evaluate'")
    page.locator(SIDEBAR).screenshot(path=str(artifacts / "sidebar.png"))


def test_tag_a_new_cell_as_a_stage(page, lab):
    last = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").count() - 1
    select_cell(page, last)
    page.keyboard.press("b")  # new code cell below, selected
    new = last + 1
    cell(page, new).wait_for()
    cell(page, new).locator(".jp-InputArea-editor").click()
    page.keyboard.type('summary = f"accuracy {accuracy:.3f}"')
    page.keyboard.press("Escape")
    apply_editor(page, role="stage", name="report", after=["register"])
    # Re-validated from the unsaved content: no save needed for the graph to change.
    node(page, "report").wait_for(timeout=10_000)
    assert page.locator(f'{SIDEBAR} .jp-pipeline-edge[data-edge="register->report"]').count() == 1
    assert page.locator('.jp-pipeline-cell-chip[data-stage="report"]').count() == 1
    save(page, lab)
    assert saved_tags(lab, new) == ["stage:report", "after:register"]


def test_a_cycle_is_listed_and_selects_its_cell(page, lab):
    load_cell = 4  # stage:load
    node(page, "load").click()
    page.wait_for_function(
        "() => document.querySelector('.jp-Cell.jp-mod-active .jp-pipeline-cell-chip')?.dataset.stage === 'load'")
    apply_editor(page, after=["report"])
    problem = page.locator(f'{SIDEBAR} .jp-pipeline-problem[data-code="cycle"]')
    problem.first.wait_for(timeout=10_000)
    assert "cycle" in problem.first.inner_text().lower()
    # Clicking the problem selects its cell: move away first.
    select_cell(page, 0)
    problem.first.click()
    expected = re.search(r"cell (\d+)", problem.first.inner_text())
    if expected:
        active = page.locator(".jp-NotebookPanel:visible .jp-Cell.jp-mod-active")
        cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
        index = cells.evaluate_all("(cs) => cs.findIndex(c => c.classList.contains('jp-mod-active'))")
        assert index == int(expected.group(1)), active.inner_text()[:200]
    # Undo the cycle for the run that follows.
    select_cell(page, load_cell)
    apply_editor(page, uncheck=["report"])
    problem.first.wait_for(state="detached", timeout=10_000)
    save(page, lab)
    assert saved_tags(lab, load_cell) == ["stage:load"]


def test_publish_a_local_run(page, lab, artifacts):
    page.locator('jp-button[data-command="jupyter-pipeline:publish"]').first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("#jp-pipeline-target").wait_for()
    assert dialog.locator("#jp-pipeline-target").input_value() == "local"
    epochs = dialog.locator('input[data-parameter="epochs"]')
    assert epochs.input_value() == "5"  # pre-filled from the parameters cell
    epochs.fill("1")
    dialog.locator(".jp-Dialog-content").screenshot(path=str(artifacts / "publish-dialog.png"))
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")

    run = page.locator(f"{SIDEBAR} .jp-pipeline-run").first
    run.wait_for(timeout=15_000)
    run.locator(".jp-pipeline-stage-row").first.wait_for(timeout=15_000)
    # Live per-stage status until the whole run is done.
    page.wait_for_function(
        f"""() => {{
            const r = document.querySelector('{SIDEBAR} .jp-pipeline-run');
            return r && r.dataset.status !== 'running';
        }}""",
        timeout=240_000, polling=500)
    rows = run.locator(".jp-pipeline-stage-row")
    status = {rows.nth(i).get_attribute("data-stage"): rows.nth(i).get_attribute("data-status")
              for i in range(rows.count())}
    page.locator(SIDEBAR).screenshot(path=str(artifacts / "sidebar-run.png"))
    runs = page.locator(f"{SIDEBAR} .jp-pipeline-section-runs")
    runs.scroll_into_view_if_needed()
    runs.screenshot(path=str(artifacts / "runs.png"))
    assert run.get_attribute("data-status") == "succeeded", (status, run.inner_text())
    assert status == {s: "succeeded" for s in DIGITS_STAGES + ["report"]}
    # The evaluate stage logged its accuracy as a metric, shown under the stage.
    assert "accuracy=" in run.inner_text()


def test_open_a_stage_executed_notebook(page, lab):
    run = page.locator(f"{SIDEBAR} .jp-pipeline-run").first
    run_id = run.get_attribute("data-run-id")
    run.locator('.jp-pipeline-stage-row[data-stage="evaluate"] .jp-pipeline-open-notebook').click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="evaluate.ipynb")
    tab.wait_for(timeout=20_000)
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-OutputArea-output", has_text="test accuracy").first.wait_for(timeout=20_000)
    assert (lab["root"] / "pipeline-runs" / run_id / "evaluate.ipynb").exists()


def show_digits(page):
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="digits.ipynb").click()
    page.wait_for_function(
        "() => document.querySelector('#jupyter-pipeline-sidebar .jp-pipeline-title')?.textContent.startsWith('digits')")


def test_cancel_a_run_from_the_context_menu(page):
    show_digits(page)
    cell(page, 4).locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Publish as pipeline").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")
    runs = page.locator(f"{SIDEBAR} .jp-pipeline-run")
    page.wait_for_function(f"() => document.querySelectorAll('{SIDEBAR} .jp-pipeline-run').length === 2")
    newest = runs.first
    assert newest.get_attribute("data-status") == "running"
    newest.locator("button.jp-pipeline-cancel").click()
    page.wait_for_function(
        f"() => document.querySelector('{SIDEBAR} .jp-pipeline-run')?.dataset.status === 'cancelled'",
        timeout=60_000)
    # Newest first: the earlier, succeeded run is second.
    assert runs.nth(1).get_attribute("data-status") == "succeeded"


def test_dark_theme(page, artifacts):
    show_digits(page)
    page.keyboard.press("Control+Shift+c")
    page.keyboard.type("Use Theme: JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=20_000)
    page.locator('.jp-SideBar [data-id="jupyter-pipeline-sidebar"]').click() if not page.locator(
        SIDEBAR).is_visible() else None
    page.locator(SIDEBAR).evaluate("(el) => { el.scrollTop = 0; }")
    page.locator(SIDEBAR).screenshot(path=str(artifacts / "sidebar-dark.png"))
    assert not page.errors, page.errors  # type: ignore[attr-defined]
