"""Running one stage: every failure names the source cell and the error's own first line."""

from __future__ import annotations

import pytest

from jupyter_pipeline.local.runner import run_pipeline

pytestmark = pytest.mark.slow


def test_failing_magics_name_their_cell_and_usage_error(fixture_nb, store_dir):
    # IPython prints a magic's UsageError instead of raising it into the cell: no error output.
    record = run_pipeline(fixture_nb("failing_magics"), store=store_dir)
    unknown, bad = record.stages["unknown"], record.stages["bad-option"]
    assert record.stages["start"].status.value == "succeeded"
    assert unknown.error == "UsageError: Line magic function `%no_such_magic` not found."
    assert unknown.error_cell == 2
    assert bad.error.startswith("UsageError: option -n requires argument") and bad.error_cell == 3
    assert all(rec.error_cell for rec in record.stages.values() if rec.status.value == "failed")
