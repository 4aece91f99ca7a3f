"""Writes ``iris.ipynb``: train -> evaluate -> register (only when accurate enough) -> promote.

Run ``python examples/iris/make_iris.py`` after changing a cell here; the notebook is what users open.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: The register stage's condition: below it the stage (and promote, which needs its version) is skipped.
REGISTER_IF = ["if:accuracy >= min_accuracy"]

CELLS = [
    new_markdown_cell(
        "# Iris: a scikit-learn model from training to serving, behind a gate\n\n"
        "train → evaluate → register (only when the test accuracy reaches `min_accuracy`) → promote to "
        "`production`. Run it with `jupyter-pipeline run examples/iris/iris.ipynb -p min_accuracy 0.9`, then "
        "`jupyter-pipeline serve`: `/v2/models/iris` answers with the promoted version. The notebook also runs "
        "top to bottom in JupyterLab."),
    (["setup"], "import numpy as np\nfrom jupyter_pipeline import log_metric, log_model, promote_model"),
    (["parameters"], "min_accuracy = 0.9\nC = 1.0\ntest_size = 0.3\nseed = 0"),
    new_markdown_cell("## Train\nscikit-learn bundles the iris data, so nothing is downloaded."),
    (["stage:train"], """\
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000)).fit(x_train, y_train)"""),
    new_markdown_cell("## Evaluate"),
    (["stage:evaluate"], """\
accuracy = float(clf.score(x_test, y_test))
log_metric("accuracy", accuracy)
print(f"test accuracy {accuracy:.3f} (needed: {min_accuracy})")"""),
    new_markdown_cell(
        "## Register\nTagged `if:accuracy >= min_accuracy`: below that accuracy this stage and the next are "
        "skipped (the run record says why) and the run still succeeds."),
    (["stage:register"], """\
version = log_model(clf, "iris", metadata={"accuracy": accuracy})
print("registered iris version", version)"""),
    new_markdown_cell("## Promote\n`/v2/models/iris` serves the `production` version and follows it when it moves."),
    (["stage:promote"], 'promote_model("iris", version)'),
]


def build() -> nbformat.NotebookNode:
    cells = []
    for i, cell in enumerate(CELLS):
        if isinstance(cell, tuple):
            tags, source = cell
            cell = new_code_cell(source)
            cell.metadata["tags"] = tags + (REGISTER_IF if tags == ["stage:register"] else [])
        cell.id = f"iris-{i}"  # stable ids: regenerating changes only what changed
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["jupyter_pipeline"] = {"name": "iris"}
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    nbformat.write(build(), Path(__file__).with_name("iris.ipynb"))
