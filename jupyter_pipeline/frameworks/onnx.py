"""ONNX: a ``ModelProto`` as ``model.onnx`` (protobuf: data only), served by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Framework, ModelFormatError, Runtime, refuse_pickle, require, tensor


def _tensor_specs(values) -> list[dict]:
    from onnx import helper

    specs = []
    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise ModelFormatError(f"ONNX value {value.name!r} is a {kind}, not a tensor; the server sends tensors "
                                   "only (a scikit-learn classifier converted by skl2onnx: pass "
                                   "options={'zipmap': False}).")
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        specs.append(tensor(value.name, dims, helper.tensor_dtype_to_np_dtype(t.elem_type)))
    return specs


def _graph_inputs(model) -> list:
    initializers = {i.name for i in model.graph.initializer}  # old exporters list weights as inputs too
    return [i for i in model.graph.input if i.name not in initializers]


class OnnxFramework(Framework):
    name = "onnx"
    package = "onnx"
    extra = "onnx"
    modules = ("onnx",)
    filename = "model.onnx"
    kserve_format = "onnx"
    platform = "onnxruntime_onnx"

    def save(self, model, path: Path, example=None) -> dict:
        onnx = require("onnx", self)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ModelFormatError(f"log_model: the ONNX model does not pass onnx.checker: {exc}") from None
        signature = {"inputs": _tensor_specs(_graph_inputs(model)), "outputs": _tensor_specs(model.graph.output)}
        onnx.save_model(model, str(path))
        return {"signature": signature, "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import}}

    def load(self, path: Path, meta: dict, **options):
        onnx = require("onnx", self)
        what = f"Model {meta.get('name')} v{meta.get('version')}"
        refuse_pickle(path, what)
        try:
            return onnx.load_model(str(path))
        except Exception as exc:
            raise ModelFormatError(f"{what}: {path.name} is not an ONNX model: {exc}") from None

    def runtime(self, model, meta: dict) -> Runtime:
        ort = require("onnxruntime", self, " to serve ONNX models")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the server runs requests on its own threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        signature = meta["signature"]
        outputs = [o["name"] for o in signature["outputs"]]
        dtypes = {i["name"]: np.dtype(i["dtype"]) for i in signature["inputs"]}

        def run(inputs):
            feed = {n: np.ascontiguousarray(a, dtype=dtypes[n]) for n, a in inputs.items()}
            return [np.asarray(o) for o in session.run(outputs, feed)]
        return Runtime(signature, run)

    def versions(self) -> dict:
        onnx = require("onnx", self)
        out = {"onnx": onnx.__version__}
        try:
            import onnxruntime

            out["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
        return out


FRAMEWORK = OnnxFramework()
