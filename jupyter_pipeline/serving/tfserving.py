"""TensorFlow Serving's REST API v1 (``:predict`` and model status), which KServe v1 shares.

``:predict`` takes the row form (``instances``) or the columnar form (``inputs``) and answers in
the same form (``predictions`` or ``outputs``). The status answer carries TF Serving's
``model_version_status`` and KServe v1's ``name`` and ``ready`` side by side, so both kinds of
client read it.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidRequest
from .protocol import (Answer, InferRequest, Signature, check_complete, check_shape, dumps, json_data, loads,
                       to_array)


def decode_v1(body: bytes, signature: Signature) -> InferRequest:
    """Decode a TF Serving ``:predict`` body: the row (``instances``) or columnar (``inputs``) form."""
    doc = loads(body)
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
        arr = to_array(data, spec, None, what)
        check_shape(arr.shape, spec, what)
        inputs[key] = arr
    check_complete(inputs, signature)
    return InferRequest(inputs, None, None, columnar)


def encode_v1(name: str, version: int, signature: Signature, request: InferRequest,
              outputs: list[np.ndarray]) -> Answer:
    """The TF Serving response: ``predictions`` (row form) or ``outputs`` (columnar form)."""
    names = [s.name for s in signature.outputs]
    outputs = [json_data(a) if a.dtype.kind in "OSU" else np.ascontiguousarray(a) for a in outputs]
    if request.columnar:
        return Answer(dumps({"outputs": outputs[0] if len(outputs) == 1 else dict(zip(names, outputs))}))
    if len(outputs) == 1:
        return Answer(dumps({"predictions": outputs[0]}))
    rows = [{n: col[i] for n, col in zip(names, outputs)} for i in range(len(outputs[0]))]
    return Answer(dumps({"predictions": rows}))


def model_status_v1(name: str, versions: dict[int, str | None], ready: bool) -> dict:
    """``GET /v1/models/{name}``, in TF Serving's form (one status per version; a message marks a
    version that failed) and KServe v1's (``name``, ``ready``) at once."""
    return {"name": name, "ready": ready, "model_version_status": [
        {"version": str(v), "state": "AVAILABLE" if err is None else "END",
         "status": {"error_code": "OK" if err is None else "UNKNOWN", "error_message": err or ""}}
        for v, err in sorted(versions.items(), reverse=True)]}
