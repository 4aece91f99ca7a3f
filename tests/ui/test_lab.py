"""The JupyterLab extension in a real JupyterLab and Chromium, against the real server extension.

The tests share one page and run in file order, as a user would: look at the stages on the
cells, make a cell a stage in three actions, edit a stage on its cell, break the pipeline and be
refused at publish, publish a local run, open a stage's executed notebook read-only, start an
empty notebook, and look at it all in the dark theme. Screenshots (1400×900) go to
tests/ui/artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow]

SIDEBAR = "#jupyter-pipeline-sidebar"
NOTEBOOK = ".jp-NotebookPanel:visible .jp-Notebook"
DIGITS_STAGES = ["load", "preprocess", "train", "evaluate", "register"]


# -- helpers -----------------------------------------------------------------------------------
def node(page, stage):
    return page.locator(f'{SIDEBAR} .jp-pipeline-node[data-stage="{stage}"]')


def cells(page):
    return page.locator(f"{NOTEBOOK} .jp-Cell")


def cell(page, index):
    return cells(page).nth(index)


def select_cell(page, index):
    cell(page, index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")


def active_index(page) -> int:
    return cells(page).evaluate_all("(cs) => cs.findIndex(c => c.classList.contains('jp-mod-active'))")


def new_cell_below(page, index, source) -> int:
    """Add a code cell below cell `index`, type `source` in it, leave it in command mode."""
    select_cell(page, index)
    page.keyboard.press("b")
    new = index + 1
    cell(page, new).locator(".jp-InputArea-editor").click()
    page.keyboard.type(source)
    page.keyboard.press("Escape")
    return new


def saved_cell(lab, index, name="digits.ipynb"):
    return json.loads((lab["root"] / name).read_text())["cells"][index]


def save(page, lab, name="digits.ipynb"):
    """Save the notebook and wait for the file on disk to change."""
    path = lab["root"] / name
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 15
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.1)
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", state="detached", timeout=10_000)


def shot(page, artifacts, name):
    """A full-window screenshot, named after the theme it shows."""
    theme = "dark" if page.locator("body[data-jp-theme-light='false']").count() else "light"
    page.screenshot(path=str(artifacts / f"{name}-{theme}.png"))


def open_publish(page):
    page.locator(f"{SIDEBAR} button.jp-pipeline-publish").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    return dialog


def api_get(lab, path):
    joiner = "&" if "?" in path else "?"
    with urllib.request.urlopen(f"{lab['url']}/{path}{joiner}token={lab['token']}", timeout=10) as r:
        return json.loads(r.read())


def show_digits(page):
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="digits.ipynb").click()
    page.wait_for_function(
        "() => document.querySelector('#jupyter-pipeline-sidebar .jp-pipeline-title')?.textContent.startsWith('digits')")


def in_view(page, selector) -> bool:
    """Whether the element is inside the sidebar's visible area."""
    return page.evaluate(
        """([sel, side]) => {
            const el = document.querySelector(sel), box = document.querySelector(side);
            if (!el || !box) return false;
            const a = el.getBoundingClientRect(), b = box.getBoundingClientRect();
            return a.top >= b.top - 1 && a.top < b.bottom && a.height > 0;
        }""", [selector, SIDEBAR])


# -- stages on the cells ------------------------------------------------------------------------
def test_each_code_cell_shows_its_stage(page, artifacts):
    for stage in DIGITS_STAGES:
        node(page, stage).wait_for()
    assert node(page, "train").locator(".jp-pipeline-gpu-badge").count() == 1
    chips = page.locator(f"{NOTEBOOK} .jp-pipeline-cell-chip")
    page.locator(f'{NOTEBOOK} .jp-pipeline-cell-chip[data-stage="register"]').wait_for()  # bars come as cells render
    assert [chips.nth(i).get_attribute("data-stage") for i in range(chips.count())] == DIGITS_STAGES
    assert "1 GPU" in cell(page, 8).locator(".jp-pipeline-cellbar-summary").inner_text()
    roles = {cell(page, i).locator(".jp-pipeline-role-chip").get_attribute("data-role") for i in (1, 2, 13)}
    assert roles == {"setup", "parameters", "skip"}
    # markdown cells carry no bar; the sidebar has no editor any more
    assert cell(page, 0).locator(".jp-pipeline-cellbar").count() == 0
    assert page.locator(f"{SIDEBAR} .jp-pipeline-stage-form").count() == 0
    # the chip sits in its own row, clear of JupyterLab's cell toolbar
    select_cell(page, 4)
    chip = cell(page, 4).locator(".jp-pipeline-cell-chip").bounding_box()
    toolbar = cell(page, 4).locator(".jp-cell-toolbar")
    if toolbar.count():
        box = toolbar.bounding_box()
        assert chip["x"] + chip["width"] < box["x"] or chip["y"] + chip["height"] <= box["y"] + 1
    # clicking a graph box selects the stage's first cell, in command mode
    node(page, "evaluate").click()
    page.wait_for_function(
        "() => document.querySelector('.jp-Cell.jp-mod-active .jp-pipeline-cell-chip')?.dataset.stage === 'evaluate'")
    assert page.locator(".jp-Notebook.jp-mod-commandMode").count() == 1
    shot(page, artifacts, "cells")


def test_make_a_cell_a_stage_in_three_actions(page, lab):
    last = cells(page).count() - 1
    new = new_cell_below(page, last, 'summary = f"accuracy {accuracy:.3f}"')
    target = cell(page, new)
    target.hover()
    # 1: click "Add stage", 2: type the name, 3: Enter
    target.locator(".jp-pipeline-add-stage").click()
    page.keyboard.type("report")
    page.keyboard.press("Enter")
    target.locator('.jp-pipeline-cell-chip[data-stage="report"]').wait_for()
    node(page, "report").wait_for(timeout=10_000)  # validated from the unsaved content
    assert target.locator(".jp-pipeline-stage-form").count() == 0
    assert page.locator(".jp-Notebook.jp-mod-commandMode").count() == 1  # back to the notebook, keys work
    # the keyboard does the same: S on the selected cell, type, Enter
    extra = new_cell_below(page, new, "digits_seen = len(labels)")
    page.keyboard.press("s")
    page.keyboard.type("count")
    page.keyboard.press("Enter")
    node(page, "count").wait_for(timeout=10_000)
    save(page, lab)
    assert saved_cell(lab, new)["metadata"]["tags"] == ["stage:report"]
    assert saved_cell(lab, extra)["metadata"]["tags"] == ["stage:count"]
    # ... and so does the command, from the cell's context menu: here, to undo the second one
    cell(page, extra).locator(".jp-pipeline-cellbar").click(button="right")
    page.locator(".lm-Menu-item", has_text="Edit stage of cell").click()
    form = cell(page, extra).locator(".jp-pipeline-stage-form")
    form.locator("select.jp-pipeline-role").select_option("skip")
    form.locator("button.jp-pipeline-apply").click()
    node(page, "count").wait_for(state="detached", timeout=10_000)


def test_edit_a_stage_on_its_cell(page, lab, artifacts):
    report = cells(page).count() - 2
    target = cell(page, report)
    target.locator(".jp-pipeline-cell-chip").click()
    form = target.locator(".jp-pipeline-stage-form")
    assert form.locator("input.jp-pipeline-stage-name").input_value() == "report"
    form.locator('.jp-pipeline-after input[value="register"]').check()
    form.locator("input.jp-pipeline-gpu").fill("1")
    form.locator("input.jp-pipeline-cpu").fill("two")
    form.locator("input.jp-pipeline-memory").fill("1Gi")
    form.locator("input.jp-pipeline-retries").fill("2")
    form.locator("input.jp-pipeline-timeout").fill("60")
    assert form.locator(".jp-pipeline-workers-hint").count() == 0
    form.locator("input.jp-pipeline-workers").fill("2")
    assert "2 replicas started together" in form.locator(".jp-pipeline-workers-hint").inner_text()
    form.locator("input.jp-pipeline-cache").uncheck()
    form.locator("button.jp-pipeline-more-toggle").click()
    form.locator("textarea.jp-pipeline-more-tags").fill("env:LOG_LEVEL=debug\nvolume:data-pvc:/data")
    form.locator("button.jp-pipeline-apply").click()
    # a bad field keeps the form open and says why
    assert "Kubernetes quantity" in form.locator(".jp-pipeline-field-error").inner_text()
    form.locator("input.jp-pipeline-cpu").fill("500m")
    shot(page, artifacts, "stage-form")
    form.locator("input.jp-pipeline-cpu").press("Enter")
    form.wait_for(state="detached")
    page.locator(f'{SIDEBAR} .jp-pipeline-edge[data-edge="register->report"]').wait_for(timeout=10_000)
    summary = target.locator(".jp-pipeline-cellbar-summary").inner_text()
    assert "after register" in summary and "1 GPU" in summary and "500m CPU" in summary
    assert "2 workers" in summary
    # the server's problems about workers: show in Problems, on this cell, as other options' do
    warning = page.locator(f'{SIDEBAR} .jp-pipeline-problem[data-code="workers-without-distribution"]')
    warning.wait_for(timeout=10_000)
    assert warning.get_attribute("data-cell") == str(report)
    save(page, lab)
    assert saved_cell(lab, report)["metadata"]["tags"] == [
        "stage:report", "after:register", "gpu:1", "cpu:500m", "memory:1Gi", "retries:2", "timeout:60",
        "workers:2", "cache:off", "env:LOG_LEVEL=debug", "volume:data-pvc:/data"]
    # Escape leaves without writing anything
    target.locator(".jp-pipeline-cell-chip").click()
    assert form.locator("input.jp-pipeline-workers").input_value() == "2"  # read back from the tag
    form.locator("input.jp-pipeline-stage-name").fill("renamed")
    page.keyboard.press("Escape")
    form.wait_for(state="detached")
    assert target.locator(".jp-pipeline-cell-chip").get_attribute("data-stage") == "report"
    # back to a plain stage for the run below (no GPU, volume or env on this machine)
    target.locator(".jp-pipeline-cell-chip").click()
    form.locator("input.jp-pipeline-gpu").fill("0")
    form.locator("input.jp-pipeline-workers").fill("1")
    form.locator("button.jp-pipeline-more-toggle").click() if not form.locator(
        "textarea.jp-pipeline-more-tags").count() else None
    form.locator("textarea.jp-pipeline-more-tags").fill("")
    form.locator("button.jp-pipeline-apply").click()
    form.wait_for(state="detached")
    warning.wait_for(state="detached", timeout=10_000)
    assert "workers" not in target.locator(".jp-pipeline-cellbar-summary").inner_text()
    save(page, lab)
    assert saved_cell(lab, report)["metadata"]["tags"] == [
        "stage:report", "after:register", "cpu:500m", "memory:1Gi", "retries:2", "timeout:60", "cache:off"]


def test_a_condition_on_the_stage_form(page, lab, artifacts):
    """'Runs only if' writes if:EXPR; the chip and the graph show it; emptying the field drops the tag."""
    index = cells(page).evaluate_all(
        "(cs) => cs.findIndex(c => c.querySelector('.jp-pipeline-cell-chip[data-stage=\"register\"]'))")
    target = cell(page, index)
    target.locator(".jp-pipeline-cell-chip").click()
    form = target.locator(".jp-pipeline-stage-form")
    form.locator("input.jp-pipeline-condition").fill("accuracy >= 0.5")
    form.locator("input.jp-pipeline-condition").press("Enter")
    form.wait_for(state="detached")
    assert "if accuracy >= 0.5" in target.locator(".jp-pipeline-cellbar-summary").inner_text()
    graph_node = node(page, "register")
    page.wait_for_function(
        "(el) => el.classList.contains('jp-pipeline-node-conditional')", arg=graph_node.element_handle(), timeout=10_000)
    assert "runs only if accuracy >= 0.5" in graph_node.get_attribute("aria-label")
    assert graph_node.locator(".jp-pipeline-if-badge").count() == 1
    shot(page, artifacts, "stage-condition")
    save(page, lab)
    assert "if:accuracy >= 0.5" in saved_cell(lab, index)["metadata"]["tags"]
    target.locator(".jp-pipeline-cell-chip").click()
    assert form.locator("input.jp-pipeline-condition").input_value() == "accuracy >= 0.5"  # read back
    form.locator("input.jp-pipeline-condition").fill("")
    form.locator("button.jp-pipeline-apply").click()
    form.wait_for(state="detached")
    save(page, lab)
    assert not any(t.startswith("if:") for t in saved_cell(lab, index)["metadata"]["tags"])


def test_magic_cells_are_left_out(page, lab):
    last = cells(page).count() - 1
    new = new_cell_below(page, last, "%load_ext jupyter_pipeline\n%pipeline status")
    chip = cell(page, new).locator('.jp-pipeline-role-chip[data-role="magics"]')
    chip.wait_for()
    save(page, lab)
    pipeline = api_get(lab, "jupyter-pipeline/pipeline?path=digits.ipynb")
    assert all(new not in s["cells"] for s in pipeline["stages"]), pipeline["stages"]
    assert not [p for p in pipeline["problems"] if p["severity"] == "error"], pipeline["problems"]


def test_problems_count_cells_from_one_and_publish_refuses(page, lab, artifacts):
    load_cell = 4  # stage:load
    cell(page, load_cell).locator(".jp-pipeline-cell-chip").click()
    form = cell(page, load_cell).locator(".jp-pipeline-stage-form")
    form.locator('.jp-pipeline-after input[value="report"]').check()
    form.locator("button.jp-pipeline-apply").click()
    problem = page.locator(f'{SIDEBAR} .jp-pipeline-problem[data-code="cycle"]').first
    problem.wait_for(timeout=10_000)
    place = problem.locator(".jp-pipeline-problem-place").inner_text()
    number = int(re.search(r"cell (\d+)", place).group(1))
    assert number == int(problem.get_attribute("data-cell")) + 1
    select_cell(page, 0)
    problem.click()
    assert active_index(page) + 1 == number
    # JupyterLab's status bar agrees, and the cell is not left in edit mode
    assert f"Cell {number}/" in page.locator(".jp-StatusBar-Widget", has_text="Cell ").first.inner_text()
    assert page.locator(".jp-Notebook.jp-mod-commandMode").count() == 1
    assert "`" not in problem.inner_text()

    dialog = open_publish(page)
    assert "Cannot publish yet" in dialog.inner_text()
    refused = dialog.locator('.jp-pipeline-problem[data-code="cycle"]').first
    assert f"cell {number}" in refused.inner_text()
    shot(page, artifacts, "publish-refused")
    dialog.locator("button.jp-mod-accept", has_text="Show in Problems").click()
    dialog.wait_for(state="detached")
    page.wait_for_timeout(300)
    assert in_view(page, f"{SIDEBAR} .jp-pipeline-section-problems")
    # undo the cycle
    cell(page, load_cell).locator(".jp-pipeline-cell-chip").click()
    form.locator('.jp-pipeline-after input[value="report"]').uncheck()
    form.locator("button.jp-pipeline-apply").click()
    page.locator(f'{SIDEBAR} .jp-pipeline-problem[data-code="cycle"]').first.wait_for(state="detached", timeout=10_000)
    save(page, lab)
    assert saved_cell(lab, load_cell)["metadata"]["tags"] == ["stage:load"]


def test_kubeflow_without_a_host_is_disabled_and_points_to_the_setting(page, artifacts):
    dialog = open_publish(page)
    option = dialog.locator('#jp-pipeline-target option[value="kfp"]')
    assert option.is_disabled() and "no host configured" in option.inner_text()
    assert "Settings Editor" in dialog.locator(".jp-pipeline-open-settings").inner_text()
    # kfp-local pulls no image (its config says uses_image: false): no image notes for it; they are
    # for the targets that do (kfp, disabled here without a host)
    dialog.locator("#jp-pipeline-target").select_option("kfp-local")
    assert dialog.locator("#jp-pipeline-target").input_value() == "kfp-local"
    assert dialog.locator(".jp-pipeline-form-kubeflow").count() == 0
    shot(page, artifacts, "publish-dialog")
    dialog.locator(".jp-pipeline-open-settings").click()
    dialog.wait_for(state="detached")
    settings_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Settings")
    settings_tab.wait_for(timeout=15_000)
    page.locator(".jp-SettingsPanel, .jp-SettingsEditor").first.wait_for(timeout=15_000)
    settings_tab.locator(".lm-TabBar-tabCloseIcon").click()
    show_digits(page)


def test_publish_shows_the_new_run_and_it_ticks(page, lab, artifacts):
    # a code cell active and its form open: the runs list must still come into view
    select_cell(page, 10)
    cell(page, 10).locator(".jp-pipeline-cell-chip").click()
    dialog = open_publish(page)
    assert dialog.locator("#jp-pipeline-target").input_value() == "local"
    epochs = dialog.locator('input[data-parameter="epochs"]')
    assert epochs.input_value() == "5"  # pre-filled from the parameters cell
    epochs.fill("1")
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")

    run = page.locator(f"{SIDEBAR} .jp-pipeline-run").first
    run.wait_for(timeout=15_000)
    run.locator(".jp-pipeline-stage-row").first.wait_for(timeout=15_000)
    page.wait_for_timeout(600)  # the smooth scroll
    assert in_view(page, f"{SIDEBAR} .jp-pipeline-run[data-run-id='{run.get_attribute('data-run-id')}']")
    # the run's own duration counts up between polls (every 10 s while idle, 2 s while running)
    meta = run.locator(".jp-pipeline-run-meta")
    if run.get_attribute("data-status") == "running":
        first = meta.inner_text()
        page.wait_for_timeout(1300)
        assert meta.inner_text() != first or run.get_attribute("data-status") != "running"
    page.wait_for_function(
        f"() => document.querySelector('{SIDEBAR} .jp-pipeline-run')?.dataset.status !== 'running'",
        timeout=300_000, polling=500)
    rows = run.locator(".jp-pipeline-stage-row")
    status = {rows.nth(i).get_attribute("data-stage"): rows.nth(i).get_attribute("data-status")
              for i in range(rows.count())}
    assert run.get_attribute("data-status") == "succeeded", (status, run.inner_text())
    assert status == {s: "succeeded" for s in DIGITS_STAGES + ["report"]}
    assert "accuracy=" in run.inner_text()
    # the run id is shown whole, not cut to "2…"
    run_id = run.get_attribute("data-run-id")
    assert run.locator(".jp-pipeline-run-id").evaluate("(el) => el.scrollWidth <= el.clientWidth + 1")
    assert run.locator(".jp-pipeline-run-id").inner_text() == run_id
    # every Open button is fully visible
    for button in run.locator(".jp-pipeline-open-notebook").all():
        box, side = button.bounding_box(), page.locator(SIDEBAR).bounding_box()
        assert box["x"] + box["width"] <= side["x"] + side["width"], (box, side)
    cell(page, 10).locator(".jp-pipeline-stage-form button.jp-pipeline-cancel-edit").click()
    shot(page, artifacts, "run")


def test_open_a_stage_notebook_read_only_beside_the_source(page, lab, artifacts):
    sessions = len(api_get(lab, "api/sessions"))
    kernels = len(api_get(lab, "api/kernels"))
    run = page.locator(f"{SIDEBAR} .jp-pipeline-run").first
    run_id = run.get_attribute("data-run-id")
    run.locator('.jp-pipeline-stage-row[data-stage="evaluate"] .jp-pipeline-open-notebook').click()
    view = page.locator(".jp-pipeline-stage-view:visible")
    view.locator(".jp-OutputArea-output", has_text="test accuracy").first.wait_for(timeout=20_000)
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"evaluate · {run_id}")
    assert tab.count() == 1
    # beside the notebook (a split), with the sidebar still on digits and its run
    assert page.locator(f"{NOTEBOOK}").count() == 1
    assert page.locator(f"{SIDEBAR} .jp-pipeline-title").inner_text().startswith("digits")
    assert page.locator(f"{SIDEBAR} .jp-pipeline-run[data-run-id='{run_id}']").count() == 1
    assert page.locator(f"{SIDEBAR} .jp-pipeline-problem").count() == 0
    # read-only: typing changes nothing; nothing written to the user's folder; no kernel
    code = view.locator(".jp-Cell .cm-content").last
    before = code.inner_text()
    code.click()
    page.keyboard.type("oops")
    assert code.inner_text() == before
    assert not (lab["root"] / "pipeline-runs").exists()
    assert sorted(p.name for p in lab["root"].iterdir() if not p.name.startswith(".")) == ["digits.ipynb"]
    assert len(api_get(lab, "api/sessions")) == sessions and len(api_get(lab, "api/kernels")) == kernels
    shot(page, artifacts, "stage-notebook")
    # opening it again shows the same view
    run.locator('.jp-pipeline-stage-row[data-stage="evaluate"] .jp-pipeline-open-notebook').click()
    assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"evaluate · {run_id}").count() == 1
    tab.locator(".lm-TabBar-tabCloseIcon").click()


def test_cancel_a_run_from_the_context_menu(page):
    show_digits(page)
    cell(page, 4).locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Publish as pipeline").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("button.jp-mod-accept").click()
    dialog.wait_for(state="detached")
    page.wait_for_function(f"() => document.querySelectorAll('{SIDEBAR} .jp-pipeline-run').length === 2")
    runs = page.locator(f"{SIDEBAR} .jp-pipeline-run")
    newest = runs.first
    assert newest.get_attribute("data-status") == "running"
    newest.locator("button.jp-pipeline-cancel").click()
    page.wait_for_function(
        f"() => document.querySelector('{SIDEBAR} .jp-pipeline-run')?.dataset.status === 'cancelled'",
        timeout=60_000)
    assert runs.nth(1).get_attribute("data-status") == "succeeded"


def test_a_new_empty_notebook_shows_no_error(page, lab, artifacts):
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:create-new', {kernelName: 'python3'})")
    page.wait_for_function(
        "() => document.querySelector('#jupyter-pipeline-sidebar .jp-pipeline-title')?.textContent"
        ".toLowerCase().startsWith('untitled')")
    page.locator(f"{SIDEBAR} .jp-pipeline-section-graph .jp-pipeline-empty").wait_for(timeout=10_000)
    assert "Add stage" in page.locator(f"{SIDEBAR} .jp-pipeline-section-graph").inner_text()
    assert page.locator(f"{SIDEBAR} .jp-pipeline-severity-error").count() == 0
    shot(page, artifacts, "empty-notebook")
    page.evaluate("() => window.jupyterapp.commands.execute('application:close')")
    discard = page.locator(".jp-Dialog button", has_text=re.compile("Discard|Don't Save"))
    try:
        discard.click(timeout=5_000)
    except Exception:
        pass
    show_digits(page)


def test_an_untagged_notebook_is_one_stage_with_a_hint(page, lab, artifacts):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n = 3",
                     "outputs": [], "execution_count": None},
                    {"cell_type": "code", "metadata": {}, "source": "total = sum(range(n))", "outputs": [],
                     "execution_count": None},
                    {"cell_type": "code", "metadata": {}, "source": "print(total)", "outputs": [],
                     "execution_count": None}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 4}
    (lab["root"] / "untagged.ipynb").write_text(json.dumps(nb))
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', {path: 'untagged.ipynb'})")
    node(page, "untagged").wait_for(timeout=15_000)
    assert page.locator(f"{SIDEBAR} .jp-pipeline-node").count() == 1
    hint = page.locator(f'{SIDEBAR} .jp-pipeline-problem[data-code="whole-notebook"]')
    assert "split it into stages" in hint.inner_text()
    chips = page.locator(f'{NOTEBOOK} .jp-pipeline-cellbar-continue[data-stage="untagged"]')
    chips.first.wait_for()
    assert chips.count() == 2
    shot(page, artifacts, "untagged-notebook")
    dialog = open_publish(page)
    assert "Publish as pipeline" in dialog.inner_text()  # not refused
    dialog.locator("button.jp-mod-reject").click()
    page.evaluate("() => window.jupyterapp.commands.execute('application:close')")
    show_digits(page)


def test_a_parent_notebook_shows_its_included_notebook_and_opens_it(page, lab, artifacts):
    """`notebook:` cells: a frame per notebook, bold edges between notebooks, and a click on a stage
    of the included notebook opens that notebook at the stage's cell."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "compose", lab["root"] / "compose")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:open', {path: 'compose/parent.ipynb'})")
    node(page, "compute").wait_for(timeout=15_000)
    groups = page.locator(f"{SIDEBAR} .jp-pipeline-notebook-group")
    assert sorted(groups.nth(i).get_attribute("data-notebook") for i in range(groups.count())) == [
        "", "parts/child.ipynb"]
    assert page.locator(f"{SIDEBAR} .jp-pipeline-edge-crosses").count() == 2  # base down, total back up
    chip = cell(page, 3).locator(".jp-pipeline-include-chip")
    chip.wait_for()
    assert chip.inner_text() == "includes parts/child.ipynb"
    shot(page, artifacts, "several-notebooks")
    node(page, "compute").click()
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.context && w.context.path === 'compose/parts/child.ipynb' && w.content.activeCellIndex === 3; }",
        timeout=20_000)
    for name in ("child.ipynb", "parent.ipynb"):  # close both unsaved (a kernel's start marks them changed)
        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name).click()
        page.evaluate("() => { void window.jupyterapp.commands.execute('application:close'); }")
        discard = page.locator(".jp-Dialog button", has_text="Discard")
        try:
            discard.click(timeout=3_000)
        except Exception:  # noqa: BLE001 - no dialog: nothing was changed
            pass
    show_digits(page)


def test_dark_theme(page, lab, artifacts):
    show_digits(page)
    page.keyboard.press("Control+Shift+c")
    page.keyboard.type("Use Theme: JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=20_000)
    page.locator(SIDEBAR).evaluate("(el) => { el.scrollTop = 0; }")
    node(page, "evaluate").click()
    shot(page, artifacts, "cells")
    chip = page.locator(f'{NOTEBOOK} .jp-pipeline-cell-chip[data-stage="report"]')
    chip.click()
    page.locator(f"{NOTEBOOK} .jp-pipeline-stage-form").scroll_into_view_if_needed()
    shot(page, artifacts, "stage-form")
    page.keyboard.press("Escape")
    dialog = open_publish(page)
    shot(page, artifacts, "publish-dialog")
    dialog.locator("button.jp-mod-reject").click()
    run = page.locator(f'{SIDEBAR} .jp-pipeline-run[data-status="succeeded"]')
    if run.locator(".jp-pipeline-run-toggle").get_attribute("aria-expanded") != "true":
        run.locator(".jp-pipeline-run-toggle").click()
    run.locator('.jp-pipeline-stage-row[data-stage="evaluate"]').scroll_into_view_if_needed()
    shot(page, artifacts, "run")
    run.locator('.jp-pipeline-stage-row[data-stage="evaluate"] .jp-pipeline-open-notebook').click()
    page.locator(".jp-pipeline-stage-view:visible .jp-OutputArea-output").first.wait_for(timeout=20_000)
    shot(page, artifacts, "stage-notebook")
    assert not page.errors, page.errors  # type: ignore[attr-defined]
