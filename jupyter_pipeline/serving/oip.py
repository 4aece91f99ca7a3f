"""The Open Inference Protocol v2 over REST: JSON bodies and the binary tensor extension.

With the binary extension a body is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by raw tensor data: an input whose ``parameters`` hold ``binary_data_size`` takes that
many bytes, in the order of the ``inputs`` list. Outputs come back the same way when the request
says ``"parameters": {"binary_data_output": true}`` or an output asks with
``"parameters": {"binary_data": true}`` (which also turns it off for one output); each then
carries ``binary_data_size`` instead of ``data``, and the response names its JSON length in the
same header.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidRequest
from .protocol import (Answer, InferRequest, Signature, add_input, check_complete, datatype_of, dumps, json_data,
                       loads, to_raw)

#: The header carrying the length of the JSON part of a body that has binary tensors after it.
HEADER = "Inference-Header-Content-Length"


def json_length(header: str | None, body_length: int) -> int | None:
    """The JSON part's length named by the :data:`HEADER` value ``header`` (None: all JSON)."""
    if header is None:
        return None
    if not header.strip().isdigit() or int(header) > body_length:
        raise InvalidRequest(f"{HEADER}: {header!r} must be a number of bytes no larger than the body "
                             f"({body_length}).")
    return int(header)


def _parameters(obj: dict, what: str) -> dict:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidRequest(f'{what}: "parameters" must be an object.')
    return params


def _flag(params: dict, key: str, what: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{what}: parameter {key!r} must be true or false.")
    return value


def decode_v2(body: bytes, signature: Signature, header_length: int | None = None) -> InferRequest:
    """Decode an OIP v2 ``infer`` body (``header_length``: the JSON part's length, binary extension)."""
    view = memoryview(body)
    doc = loads(body if header_length is None else bytes(view[:header_length]))
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise InvalidRequest('The request must be a JSON object with a non-empty "inputs" list.')
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise InvalidRequest('"id" must be a string.')
    params = _parameters(doc, "The request")
    if params.get("classification") is not None:
        raise InvalidRequest("The classification extension is not supported; ask for the output tensor itself.")
    binary_outputs = bool(_flag(params, "binary_data_output", "The request"))
    inputs: dict[str, np.ndarray] = {}
    offset = header_length if header_length is not None else len(body)
    for i, tensor in enumerate(doc["inputs"]):
        if not isinstance(tensor, dict):
            raise InvalidRequest(f"inputs[{i}] must be an object with name, shape, datatype and data.")
        size = _parameters(tensor, f"inputs[{i}]").get("binary_data_size")
        needed = ("name", "shape", "datatype") + (() if size is not None else ("data",))
        absent = [k for k in needed if k not in tensor]
        if absent:
            raise InvalidRequest(f"inputs[{i}] lacks {', '.join(map(repr, absent))}.")
        raw = None
        if size is not None:
            if header_length is None:
                raise InvalidRequest(f"inputs[{i}] has binary_data_size but the request has no {HEADER} header.")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(body):
                raise InvalidRequest(f"inputs[{i}]: binary_data_size {size!r} runs past the end of the body "
                                     f"({len(body) - offset} bytes of binary data left).")
            raw, offset = view[offset:offset + size], offset + size
        add_input(inputs, signature, tensor["name"], tensor["shape"], tensor["datatype"], data=tensor.get("data"),
                  raw=raw)
    if offset != len(body):
        raise InvalidRequest(f"{len(body) - offset} bytes of binary data follow the JSON that no input's "
                             "binary_data_size accounts for.")
    check_complete(inputs, signature)
    outputs, binary = _requested_outputs(doc, signature)
    return InferRequest(inputs, outputs, req_id, binary_outputs=binary_outputs, binary=binary)


def _requested_outputs(doc: dict, signature: Signature) -> tuple[list[str] | None, dict[str, bool]]:
    if doc.get("outputs") is None:
        return None, {}
    if not isinstance(doc["outputs"], list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                       for o in doc["outputs"]):
        raise InvalidRequest('"outputs" must be a list of objects with a "name".')
    names = [o["name"] for o in doc["outputs"]]
    known = [s.name for s in signature.outputs]
    unknown = [o for o in names if o not in known]
    if unknown:
        raise InvalidRequest(f"Unknown output(s) {', '.join(map(repr, unknown))}; this model's outputs are "
                             f"{', '.join(map(repr, known))}.")
    binary = {}
    for o in doc["outputs"]:
        params = _parameters(o, f"Output {o['name']!r}")
        if params.get("classification") is not None:
            raise InvalidRequest("The classification extension is not supported; ask for the output tensor itself.")
        flag = _flag(params, "binary_data", f"Output {o['name']!r}")
        if flag is not None:
            binary[o["name"]] = flag
    return names, binary


def encode_v2(name: str, version: int, signature: Signature, request: InferRequest,
              outputs: list[np.ndarray]) -> Answer:
    """The OIP v2 ``infer`` response for ``outputs`` (in the signature's order)."""
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for spec, arr in request.selected(signature, outputs):
        tensor: dict[str, Any] = {"name": spec.name, "shape": list(arr.shape), "datatype": datatype_of(arr.dtype)}
        if request.wants_binary(spec.name):
            raw = to_raw(arr)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = json_data(arr.reshape(-1))
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = tensors
    head = dumps(doc)
    if not blobs:
        return Answer(head)
    return Answer(b"".join([head, *blobs]), len(head))

