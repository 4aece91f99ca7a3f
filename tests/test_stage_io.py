"""Loading a stage's inputs: a value that does not load says which variable, who made it, and why."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from jupyter_pipeline.local.runner import run_pipeline
from jupyter_pipeline.stage.values import load_failure_cause


def test_cause_names_a_library_at_another_version():
    entry = {"saver": "pickle", "library": {"name": "numpy", "version": "0.0.1"}}
    cause = load_failure_cause(ValueError("bad header"), entry)
    assert cause == (f"it was saved with numpy 0.0.1 and this stage has numpy {np.__version__}; "
                     "use the same version in every stage")


def test_cause_names_a_definition_this_stage_lacks():
    error = AttributeError("Can't get attribute 'Helper' on <module '__main__'>")
    cause = load_failure_cause(error, {"saver": "pickle"})
    assert "'Helper' of module __main__, which this stage does not define; define it in a `setup` cell" in cause


def test_cause_names_a_keras_class_to_register():
    error = TypeError("<class 'Sequential'> could not be deserialized.\n\nException encountered: Could not locate "
                      "class 'Scale'. Make sure custom classes are decorated")
    cause = load_failure_cause(error, {"saver": "keras"})
    assert "uses the class 'Scale', which this stage cannot import" in cause and "register_keras_serializable" in cause


@pytest.mark.slow
def test_values_that_do_not_load_name_variable_maker_cell_and_cause(fixture_nb, tmp_path, store_dir):
    # The notebook writes a module next to itself: run a copy.
    notebook = shutil.copy(fixture_nb("unloadable_values"), tmp_path / "unloadable_values.ipynb")
    record = run_pipeline(notebook, store=store_dir)
    states = {name: rec.status.value for name, rec in record.stages.items()}
    assert states == {"make": "succeeded", "measure": "failed", "predict": "failed"}
    measure, predict = record.stages["measure"], record.stages["predict"]
    assert measure.error == (
        "VariableNotLoadable: Stage 'measure' (cell 5) could not load variable 'square', which stage 'make' made in "
        "cell 3: ModuleNotFoundError: No module named 'shapes_plugin'. Likely cause: the value needs 'shapes_plugin', "
        "which this stage's Python cannot import; install it where the stage runs (on Kubeflow: the notebook's "
        "`packages` setting, or an image that has it).")
    assert measure.error_cell == 5  # where the stage reads it
    assert predict.error.startswith("VariableNotLoadable: Stage 'predict' (cell 6) could not load variable 'doubler', "
                                    "which stage 'make' made in cell 4: ValueError: Requested the deserialization of a "
                                    "`Lambda` layer")
    assert predict.error.endswith("Likely cause: the model holds a Lambda layer, whose code Keras refuses to load in "
                                  "safe mode; write the computation as a layer class (in a `setup` cell) instead.")
    assert predict.error_cell == 6
