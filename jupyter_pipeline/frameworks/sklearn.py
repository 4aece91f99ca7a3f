"""scikit-learn estimators and pipelines: ``model.skops``, read back only with types known to be safe.

skops writes an estimator as a zip of a JSON schema and NumPy arrays instead of a pickle, and on
load builds only the types on its list of safe ones (scikit-learn's estimators, NumPy, SciPy,
builtins); anything else in the file (a tampered file naming ``os.system``, a custom class) is
refused with the types named, unless the caller trusts them by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import (Framework, ModelFormatError, Runtime, classes_of, classifier_outputs, feature_input, labels_array,
               output_shape, refuse_pickle, require, tensor)


def _frame(model, x: np.ndarray):
    """``x`` as the model was fitted: a DataFrame with its column names if it was fitted on one."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return x
    pandas = require("pandas", "sklearn", " to call a model fitted on a DataFrame")
    return pandas.DataFrame(x, columns=list(names))


#: scikit-learn's own types that hold fitted data (trees, neighbour search trees and their metrics,
#: optimizer state) or name its score functions, which skops does not trust by default; reviewed
#: here so that tree ensembles, neighbours and MLPs load without a list from the user. Nothing
#: outside scikit-learn and NumPy's dtype is trusted on the user's behalf.
SAFE_TYPES = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.feature_selection._univariate_selection.chi2",
)


class SklearnFramework(Framework):
    name = "sklearn"
    package = "scikit-learn"
    extra = "sklearn"
    modules = ("sklearn",)
    filename = "model.skops"
    kserve_format = "sklearn"
    platform = "sklearn"

    def save(self, model, path: Path, example=None) -> dict:
        sio = require("skops.io", self, " (the safe file format of scikit-learn models)")
        sio.dump(model, path)
        n_features = getattr(model, "n_features_in_", None)
        inputs = [feature_input(n_features, example)]
        classes = classes_of(model)
        if classes is not None:  # without predict_proba (an SVC, say) a classifier answers labels only
            outputs = classifier_outputs(classes)[:2 if hasattr(model, "predict_proba") else 1]
            extra = {"classes": classes}
        else:
            # A multi-output regressor answers one column per target: ask the model.
            shape = output_shape(lambda x: model.predict(_frame(model, x)), n_features, inputs[0]["dtype"])
            outputs, extra = [tensor("prediction", shape, "float64")], {}
        meta = {"signature": {"inputs": inputs, "outputs": outputs, **extra}, "estimator": _qualname(model)}
        if getattr(model, "feature_names_in_", None) is not None:
            meta["feature_names"] = [str(n) for n in model.feature_names_in_]
        return meta

    def load(self, path: Path, meta: dict, trusted: list[str] | None = None, **options):
        what = f"Model {meta.get('name')} v{meta.get('version')}"
        refuse_pickle(path, what)
        sio = require("skops.io", self, " (the safe file format of scikit-learn models)")
        from skops.io.exceptions import UntrustedTypesFoundException

        try:
            return sio.load(path, trusted=[*SAFE_TYPES, *(trusted or [])])
        except UntrustedTypesFoundException as exc:
            types = [t for t in sio.get_untrusted_types(file=path) if t not in SAFE_TYPES + tuple(trusted or ())]
            raise ModelFormatError(
                f"{what}: its file names types that are not known to be safe to load ({', '.join(types) or exc}); "
                "refusing to load it. If you trust them, pass load_model(..., trusted=[...]) with those names.") \
                from None
        except Exception as exc:
            raise ModelFormatError(f"{what}: {path.name} is not a readable skops file ({exc}).") from None

    def runtime(self, model, meta: dict) -> Runtime:
        signature = meta["signature"]
        classes = signature.get("classes")
        if classes is not None:
            with_proba = len(signature["outputs"]) > 1

            def classify(inputs):
                x = _frame(model, inputs["input"])
                labels = labels_array(model.predict(x), classes)
                return [labels, np.asarray(model.predict_proba(x))] if with_proba else [labels]
            return Runtime(signature, classify)
        return Runtime(signature, lambda inputs: [np.asarray(model.predict(_frame(model, inputs["input"])))])

    def versions(self) -> dict:
        sklearn = require("sklearn", self)
        skops = require("skops", self)
        return {"sklearn": sklearn.__version__, "skops": skops.__version__, "numpy": np.__version__}


def _qualname(model) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


FRAMEWORK = SklearnFramework()
