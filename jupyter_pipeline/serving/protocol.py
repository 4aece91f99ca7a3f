"""Request and response codecs: Open Inference Protocol v2 and TensorFlow Serving's REST v1.

A codec turns a request body into named NumPy arrays that fit the model's signature (or raises
:class:`~.errors.InvalidRequest` saying exactly what does not fit), and turns the model's output
arrays back into the protocol's response bytes. Codecs are pure: no tornado, no model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import InvalidRequest

#: OIP v2 datatypes and the NumPy dtypes they carry.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dt: name for name, dt in DATATYPES.items()}


def datatype_of(dtype) -> str:
    """The OIP datatype name of a NumPy (or Keras dtype string) ``dtype``."""
    dt = np.dtype("float32" if str(dtype) == "bfloat16" else str(dtype))
    return _BY_DTYPE.get(dt, "BYTES" if dt.kind in "OSU" else "FP32")


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a served model; ``None`` in ``shape`` is a free dimension."""

    name: str
    shape: tuple
    dtype: np.dtype

    @property
    def datatype(self) -> str:
        return datatype_of(self.dtype)

    def to_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1 if d is None else d for d in self.shape]}


@dataclass(frozen=True)
class Signature:
    """The served model's inputs and outputs, in the model's own order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        known = ", ".join(repr(s.name) for s in self.inputs)
        raise InvalidRequest(f"Unknown input {name!r}; this model's inputs are {known}.")

    @property
    def batched(self) -> bool:
        """Whether every input and output has a free leading (batch) dimension."""
        return all(s.shape and s.shape[0] is None for s in self.inputs + self.outputs)


@dataclass
class InferRequest:
    """A decoded request: input arrays by name, the outputs asked for, and what to echo back."""

    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None
    id: str | None = None
    columnar: bool = False  # TF Serving "inputs" form (answer with "outputs", not "predictions")

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.inputs else 0


def _loads(body: bytes) -> Any:
    # orjson refuses what JSON does not have (NaN, Infinity, numbers beyond a double) and nesting
    # deeper than 1,024 levels, where the standard library recurses into a RecursionError.
    if not body:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        at = body[exc.pos:exc.pos + 9].lstrip(b"-")
        if at.startswith((b"NaN", b"Infinity")) or "infinity" in exc.msg:
            detail = "NaN and infinite numbers are not JSON; send finite numbers"
        elif "depth limit" in exc.msg:
            detail = "it is nested more than 1,024 levels deep"
        else:
            detail = f"{exc.msg} at character {exc.pos}"
        raise InvalidRequest(f"The request body is not valid JSON: {detail}.") from None


def dumps(doc: Any) -> bytes:
    """JSON bytes of ``doc``, NumPy arrays included; a non-finite number becomes ``null``."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _to_array(data: Any, spec: TensorSpec, sent_dtype: np.dtype | None, what: str) -> np.ndarray:
    """Convert JSON ``data`` to ``spec.dtype``, refusing values that would change meaning."""
    target = spec.dtype
    try:
        arr = np.asarray(data, dtype=object if target.kind == "O" else None)
    except ValueError:
        raise InvalidRequest(f"{what}: the data is ragged (rows of different lengths).") from None
    if target.kind == "O":
        return arr
    kind = arr.dtype.kind
    if kind == "O" or kind in "US":
        raise InvalidRequest(f"{what}: the data must be numbers{' or booleans' if target.kind == 'b' else ''}, "
                             f"got {_describe(arr)}.")
    claimed = sent_dtype if sent_dtype is not None else arr.dtype
    # A value fits when its declared type casts to the model's within the same kind (FP64 -> FP32,
    # INT64 -> INT32) or widens (INT -> FP); bool <-> number and FP -> INT change meaning.
    if target.kind == "b" and claimed.kind != "b":
        raise InvalidRequest(f"{what}: expects BOOL, got {datatype_of(claimed)}.")
    if target.kind != "b" and claimed.kind == "b":
        raise InvalidRequest(f"{what}: expects {datatype_of(target)}, got BOOL.")
    if target.kind in "iu" and claimed.kind == "f":
        raise InvalidRequest(f"{what}: expects {datatype_of(target)}, got {datatype_of(claimed)} (would truncate).")
    if kind == "f" and claimed.kind in "iub":
        raise InvalidRequest(f"{what}: declared {datatype_of(claimed)} but the data holds non-integer numbers.")
    if kind == "b" and claimed.kind != "b" and arr.size:
        raise InvalidRequest(f"{what}: declared {datatype_of(claimed)} but the data holds booleans.")
    return _cast(arr, target, what)


def _cast(arr: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
    """``arr`` as ``target``, refusing values the target cannot hold (1e39 in FP32, 2**40 in INT32)."""
    if target.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidRequest(f"{what}: a value is outside {datatype_of(target)}'s range "
                                 f"[{info.min}, {info.max}].")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(target, copy=False)
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidRequest(f"{what}: cannot convert the data to {datatype_of(target)}: {exc}.") from None
    if target.kind == "f" and not np.isfinite(out).all():
        raise InvalidRequest(f"{what}: the data holds NaN, infinity or a number too large for "
                             f"{datatype_of(target)}; send finite numbers in range.")
    return out


def _describe(arr: np.ndarray) -> str:
    flat = arr.reshape(-1)
    return f"{type(flat[0]).__name__} values" if flat.size else "no values"


def _check_shape(shape: tuple, spec: TensorSpec, what: str) -> None:
    expected = "[" + ", ".join("-1" if d is None else str(d) for d in spec.shape) + "]"
    if len(shape) != len(spec.shape) or any(e is not None and e != s for s, e in zip(shape, spec.shape)):
        raise InvalidRequest(f"{what}: shape {list(shape)} does not fit the model's shape {expected} (-1 is any size).")
    if spec.shape and spec.shape[0] is None and shape[0] < 1:
        raise InvalidRequest(f"{what}: the batch is empty.")


def _check_complete(inputs: dict, signature: Signature, rows_must_match: bool = True) -> None:
    missing = [s.name for s in signature.inputs if s.name not in inputs]
    if missing:
        raise InvalidRequest(f"Missing input(s) {', '.join(map(repr, missing))}; this model needs "
                             f"{', '.join(repr(s.name) for s in signature.inputs)}.")
    if rows_must_match and signature.batched:
        rows = {name: a.shape[0] for name, a in inputs.items()}
        if len(set(rows.values())) > 1:
            raise InvalidRequest(f"Inputs have different batch sizes: {rows}.")


# -- Open Inference Protocol v2 -----------------------------------------------------------------

def decode_v2(body: bytes, signature: Signature) -> InferRequest:
    """Decode an OIP v2 ``infer`` request body against ``signature``."""
    doc = _loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise InvalidRequest('The request must be a JSON object with a non-empty "inputs" list.')
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise InvalidRequest('"id" must be a string.')
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(doc["inputs"]):
        if not isinstance(tensor, dict):
            raise InvalidRequest(f"inputs[{i}] must be an object with name, shape, datatype and data.")
        absent = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
        if absent:
            raise InvalidRequest(f"inputs[{i}] lacks {', '.join(map(repr, absent))}.")
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        if not isinstance(name, str):
            raise InvalidRequest(f"inputs[{i}].name must be a string.")
        what = f"Input {name!r}"
        if name in inputs:
            raise InvalidRequest(f"{what} is given twice.")
        spec = signature.input(name)
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise InvalidRequest(f"{what}: shape must be a list of non-negative integers, got {shape!r}.")
        if datatype not in DATATYPES:
            raise InvalidRequest(f"{what}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}.")
        if (DATATYPES[datatype].kind == "O") != (spec.dtype.kind == "O"):
            raise InvalidRequest(f"{what}: expects {spec.datatype}, got {datatype}.")
        _check_shape(tuple(shape), spec, what)
        arr = _to_array(tensor["data"], spec, DATATYPES[datatype], what)
        if arr.size != math.prod(shape):
            raise InvalidRequest(f"{what}: shape {shape} holds {math.prod(shape)} values but data has {arr.size}.")
        inputs[name] = arr.reshape(shape)
    _check_complete(inputs, signature)
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                           for o in doc["outputs"]):
            raise InvalidRequest('"outputs" must be a list of objects with a "name".')
        outputs = [o["name"] for o in doc["outputs"]]
        known = [s.name for s in signature.outputs]
        unknown = [o for o in outputs if o not in known]
        if unknown:
            raise InvalidRequest(f"Unknown output(s) {', '.join(map(repr, unknown))}; this model's outputs are "
                                 f"{', '.join(map(repr, known))}.")
    return InferRequest(inputs, outputs, req_id)


def encode_v2(name: str, version: int, signature: Signature, request: InferRequest,
              outputs: list[np.ndarray]) -> bytes:
    """The OIP v2 ``infer`` response for ``outputs`` (in the signature's order)."""
    wanted = request.outputs
    tensors = []
    for spec, arr in zip(signature.outputs, outputs):
        if wanted is not None and spec.name not in wanted:
            continue
        tensors.append({"name": spec.name, "shape": list(arr.shape), "datatype": datatype_of(arr.dtype),
                        "data": _json_data(arr.reshape(-1))})
    doc = {"model_name": name, "model_version": str(version)}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = tensors
    return dumps(doc)


def _json_data(arr: np.ndarray):
    """What JSON can hold of ``arr``: the array itself (orjson writes it), or a list for BYTES."""
    if arr.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.tolist()]
    return np.ascontiguousarray(arr)


def model_metadata_v2(name: str, versions: list[int], signature: Signature, platform: str) -> dict:
    return {"name": name, "versions": [str(v) for v in versions], "platform": platform,
            "inputs": [s.to_json() for s in signature.inputs],
            "outputs": [s.to_json() for s in signature.outputs]}


# -- TensorFlow Serving REST v1 -----------------------------------------------------------------

def decode_v1(body: bytes, signature: Signature) -> InferRequest:
    """Decode a TF Serving ``:predict`` body: the row (``instances``) or columnar (``inputs``) form."""
    doc = _loads(body)
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise InvalidRequest('The request must be a JSON object with exactly one of "instances" or "inputs".')
    names = [s.name for s in signature.inputs]
    if "instances" in doc:
        rows = doc["instances"]
        if not isinstance(rows, list) or not rows:
            raise InvalidRequest('"instances" must be a non-empty list.')
        if len(names) == 1 and not all(isinstance(r, dict) for r in rows):
            columns = {names[0]: rows}
        else:
            if not all(isinstance(r, dict) for r in rows):
                raise InvalidRequest(f"This model has several inputs ({', '.join(map(repr, names))}): each "
                                     "instance must be an object keyed by input name.")
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise InvalidRequest("Every instance must name the same inputs.")
            columns = {k: [r[k] for r in rows] for k in rows[0]}
        columnar = False
    else:
        value = doc["inputs"]
        columns = value if isinstance(value, dict) else ({names[0]: value} if len(names) == 1 else None)
        if columns is None:
            raise InvalidRequest(f'This model has several inputs: "inputs" must be an object keyed by '
                                 f"{', '.join(map(repr, names))}.")
        columnar = True
    inputs = {}
    for key, data in columns.items():
        spec = signature.input(key)
        what = f"Input {key!r}"
        arr = _to_array(data, spec, None, what)
        _check_shape(arr.shape, spec, what)
        inputs[key] = arr
    _check_complete(inputs, signature)
    return InferRequest(inputs, None, None, columnar)


def encode_v1(signature: Signature, request: InferRequest, outputs: list[np.ndarray]) -> bytes:
    """The TF Serving response: ``predictions`` (row form) or ``outputs`` (columnar form)."""
    names = [s.name for s in signature.outputs]
    outputs = [_json_data(a) if a.dtype.kind in "OSU" else np.ascontiguousarray(a) for a in outputs]
    if request.columnar:
        return dumps({"outputs": outputs[0] if len(outputs) == 1 else dict(zip(names, outputs))})
    if len(outputs) == 1:
        return dumps({"predictions": outputs[0]})
    rows = [{n: col[i] for n, col in zip(names, outputs)} for i in range(len(outputs[0]))]
    return dumps({"predictions": rows})


def model_status_v1(versions: dict[int, str | None]) -> dict:
    """``GET /v1/models/{name}``: one status per version; a message marks a version that failed."""
    return {"model_version_status": [
        {"version": str(v), "state": "AVAILABLE" if err is None else "END",
         "status": {"error_code": "OK" if err is None else "UNKNOWN", "error_message": err or ""}}
        for v, err in sorted(versions.items(), reverse=True)]}
