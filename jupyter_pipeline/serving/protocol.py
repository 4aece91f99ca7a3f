"""What every protocol's codec shares: datatypes, signatures, decoded requests, checked inputs.

A codec (:mod:`.oip` for OIP v2 over REST, :mod:`.tfserving` for TF Serving's REST v1,
:mod:`.grpc_service` for OIP v2 over gRPC) turns a request into named NumPy arrays that fit the model's
signature, or raises :class:`~.errors.InvalidRequest` saying exactly what does not fit, and turns
the model's output arrays back into the protocol's response bytes. The checks live here, once:
a tensor sent as JSON, as OIP binary data or as gRPC contents meets the same rules. Codecs are
pure: no tornado, no grpc, no model.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
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
    binary_outputs: bool = False  # OIP binary extension: outputs as raw bytes after the JSON ...
    binary: dict[str, bool] = field(default_factory=dict)  # ... unless an output says otherwise

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.inputs else 0

    def wants_binary(self, output: str) -> bool:
        return self.binary.get(output, self.binary_outputs)

    def selected(self, signature: Signature, outputs: list[np.ndarray]):
        """``(spec, array)`` of each output asked for, in the model's order."""
        return [(spec, arr) for spec, arr in zip(signature.outputs, outputs)
                if self.outputs is None or spec.name in self.outputs]


@dataclass(frozen=True)
class Answer:
    """A response body; with the binary extension, the length of its leading JSON part."""

    body: bytes
    json_length: int | None = None

    def __len__(self) -> int:  # what it costs in the prediction cache
        return len(self.body)


def loads(body: bytes) -> Any:
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


def to_array(data: Any, spec: TensorSpec, sent_dtype: np.dtype | None, what: str) -> np.ndarray:
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
    return cast(arr, target, what)


def cast(arr: np.ndarray, target: np.dtype, what: str) -> np.ndarray:
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


def check_shape(shape: tuple, spec: TensorSpec, what: str) -> None:
    expected = "[" + ", ".join("-1" if d is None else str(d) for d in spec.shape) + "]"
    if len(shape) != len(spec.shape) or any(e is not None and e != s for s, e in zip(shape, spec.shape)):
        raise InvalidRequest(f"{what}: shape {list(shape)} does not fit the model's shape {expected} (-1 is any size).")
    if spec.shape and spec.shape[0] is None and shape[0] < 1:
        raise InvalidRequest(f"{what}: the batch is empty.")


def check_complete(inputs: dict, signature: Signature, rows_must_match: bool = True) -> None:
    missing = [s.name for s in signature.inputs if s.name not in inputs]
    if missing:
        raise InvalidRequest(f"Missing input(s) {', '.join(map(repr, missing))}; this model needs "
                             f"{', '.join(repr(s.name) for s in signature.inputs)}.")
    if rows_must_match and signature.batched:
        rows = {name: a.shape[0] for name, a in inputs.items()}
        if len(set(rows.values())) > 1:
            raise InvalidRequest(f"Inputs have different batch sizes: {rows}.")


def add_input(inputs: dict, signature: Signature, name: Any, shape: Any, datatype: Any, *,
              data: Any = None, raw: bytes | memoryview | None = None) -> None:
    """Check one input tensor (JSON ``data`` or ``raw`` bytes) against ``signature``; add it to ``inputs``."""
    if not isinstance(name, str):
        raise InvalidRequest(f"An input's name must be a string, got {name!r}.")
    what = f"Input {name!r}"
    if name in inputs:
        raise InvalidRequest(f"{what} is given twice.")
    spec = signature.input(name)
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                       for d in shape):
        raise InvalidRequest(f"{what}: shape must be a list of non-negative integers, got {shape!r}.")
    shape = tuple(shape)
    if datatype not in DATATYPES:
        raise InvalidRequest(f"{what}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}.")
    if (DATATYPES[datatype].kind == "O") != (spec.dtype.kind == "O"):
        raise InvalidRequest(f"{what}: expects {spec.datatype}, got {datatype}.")
    check_shape(shape, spec, what)
    count = math.prod(shape)
    if raw is not None:
        arr = from_raw(raw, datatype, count, what)
        if spec.dtype.kind != "O":
            if (spec.dtype.kind == "b") != (arr.dtype.kind == "b") or (spec.dtype.kind in "iu" and arr.dtype.kind == "f"):
                raise InvalidRequest(f"{what}: expects {spec.datatype}, got {datatype}.")
            arr = cast(arr, spec.dtype, what)
    else:
        arr = to_array(data, spec, DATATYPES[datatype], what)
    if arr.size != count:
        raise InvalidRequest(f"{what}: shape {list(shape)} holds {count} values but data has {arr.size}.")
    inputs[name] = arr.reshape(shape)


# -- raw tensor bytes: the OIP binary extension and gRPC's raw contents -------------------------------

def from_raw(raw: bytes | memoryview, datatype: str, count: int, what: str) -> np.ndarray:
    """The ``count`` elements of ``datatype`` in ``raw`` (little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        items, at, view = [], 0, memoryview(raw)
        while at < len(view):
            if at + 4 > len(view):
                raise InvalidRequest(f"{what}: BYTES data ends inside an element's 4-byte length.")
            (size,) = struct.unpack_from("<I", view, at)
            if at + 4 + size > len(view):
                raise InvalidRequest(f"{what}: a BYTES element runs past the end of its data.")
            items.append(bytes(view[at + 4:at + 4 + size]))
            at += 4 + size
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(f"{what}: {len(raw)} bytes of binary data, but {count} {datatype} values take "
                             f"{count * dtype.itemsize}.")
    return np.frombuffer(raw, dtype=dtype)


def to_raw(arr: np.ndarray) -> bytes:
    """``arr`` as raw tensor bytes (the inverse of :func:`from_raw`)."""
    if arr.dtype.kind in "OSU":
        parts = []
        for v in arr.reshape(-1).tolist():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts += [struct.pack("<I", len(b)), b]
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def json_data(arr: np.ndarray):
    """What JSON can hold of ``arr``: the array itself (orjson writes it), or a list for BYTES."""
    if arr.dtype.kind in "OSU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1).tolist()]
    return np.ascontiguousarray(arr)


def model_metadata_v2(name: str, versions: list[int], signature: Signature, platform: str,
                      parameters: dict | None = None) -> dict:
    doc = {"name": name, "versions": [str(v) for v in versions], "platform": platform,
           "inputs": [s.to_json() for s in signature.inputs],
           "outputs": [s.to_json() for s in signature.outputs]}
    if parameters:
        doc["parameters"] = parameters
    return doc


