"""LightGBM: a ``Booster`` or a scikit-learn wrapper (``LGBMClassifier``...) in LightGBM's model text file.

The text file holds the trees only. A wrapper is rebuilt around the loaded ``Booster`` from what
``meta.json`` records (its class by name, its parameters, the classes), the way its own ``fit``
leaves it, so ``load_model`` gives back an estimator that predicts like the logged one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import (Framework, ModelFormatError, Runtime, classes_of, classifier_outputs, feature_input, labels_array,
               output_shape, refuse_pickle, require, tensor)

WRAPPERS = ("LGBMClassifier", "LGBMRegressor", "LGBMRanker")


def _json_params(params: dict) -> dict:
    """The wrapper's parameters that JSON can hold (callables and objects are left out)."""
    out = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


class LightGBMFramework(Framework):
    name = "lightgbm"
    package = "lightgbm"
    extra = "lightgbm"
    modules = ("lightgbm",)
    filename = "model.txt"
    kserve_format = "lightgbm"
    platform = "lightgbm"

    def save(self, model, path: Path, example=None) -> dict:
        lgb = require("lightgbm", self)
        if isinstance(model, lgb.Booster):
            model.save_model(str(path))
            inputs = [feature_input(model.num_feature(), example)]
            shape = output_shape(model.predict, model.num_feature())
            return {"signature": {"inputs": inputs, "outputs": [tensor("prediction", shape, "float64")]},
                    "wrapper": None}
        wrapper = type(model).__name__
        if wrapper not in WRAPPERS:
            raise ModelFormatError(f"log_model: {wrapper} is not one of LightGBM's estimators ({', '.join(WRAPPERS)}); "
                                   "log its Booster (model.booster_) instead.")
        model.booster_.save_model(str(path))
        inputs = [feature_input(model.n_features_in_, example)]
        classes = classes_of(model)
        if classes is not None:
            outputs, extra = classifier_outputs(classes), {"classes": classes}
        else:
            outputs, extra = [tensor("prediction", output_shape(model.predict, model.n_features_in_), "float64")], {}
        return {"signature": {"inputs": inputs, "outputs": outputs, **extra}, "wrapper": wrapper,
                "params": _json_params(model.get_params())}

    def load(self, path: Path, meta: dict, **options):
        lgb = require("lightgbm", self)
        what = f"Model {meta.get('name')} v{meta.get('version')}"
        refuse_pickle(path, what)
        try:
            booster = lgb.Booster(model_file=str(path))  # LightGBM's text parser: data only, no code
        except lgb.basic.LightGBMError as exc:
            raise ModelFormatError(f"{what}: {path.name} is not a LightGBM model file: {exc}") from None
        wrapper = meta.get("wrapper")
        if wrapper is None:
            return booster
        if wrapper not in WRAPPERS:
            raise ModelFormatError(f"{what}: meta.json names an unknown LightGBM estimator {wrapper!r}.")
        return _rebuild(getattr(lgb, wrapper)(**meta.get("params", {})), booster, meta["signature"].get("classes"))

    def runtime(self, model, meta: dict) -> Runtime:
        signature = meta["signature"]
        classes = signature.get("classes")
        if classes is not None:
            def classify(inputs):
                x = inputs["input"]
                return [labels_array(model.predict(x), classes), np.asarray(model.predict_proba(x))]
            return Runtime(signature, classify)
        return Runtime(signature, lambda inputs: [np.asarray(model.predict(inputs["input"]))])


def _rebuild(model, booster, classes):
    """``model`` (an unfitted wrapper) as its ``fit`` would leave it with ``booster`` trained."""
    from sklearn.preprocessing import LabelEncoder

    model._Booster = booster
    model._n_features = model._n_features_in = booster.num_feature()
    model._best_iteration = booster.best_iteration
    model._best_score = {}
    model._evals_result = {}
    model._objective = booster.params.get("objective", model.objective)
    model._other_params = {}
    if classes is not None:
        model._le = LabelEncoder().fit(np.asarray(classes))
        model._classes = model._le.classes_
        model._n_classes = len(classes)
    model.fitted_ = True
    return model


FRAMEWORK = LightGBMFramework()
