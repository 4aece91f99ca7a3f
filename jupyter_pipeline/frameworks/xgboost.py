"""XGBoost: a ``Booster`` or a scikit-learn wrapper (``XGBClassifier``...) in XGBoost's own JSON model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import (Framework, ModelFormatError, Runtime, classes_of, classifier_outputs, feature_input, labels_array,
               output_shape, refuse_pickle, require, tensor)

#: The wrappers ``load_model`` may rebuild (by name from meta.json: nothing else is instantiated).
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")


class XGBoostFramework(Framework):
    name = "xgboost"
    package = "xgboost"
    extra = "xgboost"
    modules = ("xgboost",)
    filename = "model.json"
    kserve_format = "xgboost"
    platform = "xgboost"

    def save(self, model, path: Path, example=None) -> dict:
        xgb = require("xgboost", self)
        model.save_model(path)
        if isinstance(model, xgb.Booster):
            n_features = model.num_features()
            outputs = [tensor("prediction", output_shape(model.inplace_predict, n_features, "float32"), "float32")]
            return {"signature": {"inputs": [feature_input(n_features, example, "float32")], "outputs": outputs},
                    "wrapper": None}
        wrapper = type(model).__name__
        if wrapper not in WRAPPERS:
            raise ModelFormatError(f"log_model: {wrapper} is not one of XGBoost's estimators ({', '.join(WRAPPERS)}); "
                                   "log its Booster (model.get_booster()) instead.")
        inputs = [feature_input(getattr(model, "n_features_in_", None), example, "float32")]
        classes = classes_of(model)
        if classes is not None:
            outputs, extra = classifier_outputs(classes, "float32"), {"classes": classes}
        else:
            shape = output_shape(model.predict, getattr(model, "n_features_in_", None), "float32")
            outputs, extra = [tensor("prediction", shape, "float32")], {}
        return {"signature": {"inputs": inputs, "outputs": outputs, **extra}, "wrapper": wrapper}

    def load(self, path: Path, meta: dict, **options):
        xgb = require("xgboost", self)
        what = f"Model {meta.get('name')} v{meta.get('version')}"
        refuse_pickle(path, what)
        wrapper = meta.get("wrapper")
        if wrapper is not None and wrapper not in WRAPPERS:
            raise ModelFormatError(f"{what}: meta.json names an unknown XGBoost estimator {wrapper!r}.")
        model = getattr(xgb, wrapper)() if wrapper else xgb.Booster()
        try:
            model.load_model(path)  # XGBoost's JSON parser: data only, no code
        except xgb.core.XGBoostError as exc:
            raise ModelFormatError(f"{what}: {path.name} is not an XGBoost model file: "
                                   f"{str(exc).splitlines()[0]}") from None
        return model

    def runtime(self, model, meta: dict) -> Runtime:
        signature = meta["signature"]
        classes = signature.get("classes")
        if meta.get("wrapper") is None:
            return Runtime(signature, lambda inputs: [np.asarray(model.inplace_predict(inputs["input"]))])
        if classes is not None:
            def classify(inputs):
                x = inputs["input"]
                return [labels_array(model.predict(x), classes), np.asarray(model.predict_proba(x))]
            return Runtime(signature, classify)
        return Runtime(signature, lambda inputs: [np.asarray(model.predict(inputs["input"]))])


FRAMEWORK = XGBoostFramework()
