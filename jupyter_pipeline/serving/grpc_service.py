"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService``, beside REST.

It runs on the server's own event loop (``grpc.aio``) and answers through the same
:class:`~.inference.Inference` as REST: same models and versions, batcher, prediction cache,
statistics and metrics (protocol label ``grpc``). ``ModelInfer`` takes and returns serialized bytes:
the request bytes are the cache key, so a cache hit is neither parsed nor re-encoded. Outputs go
back as ``raw_output_contents``; inputs may come as ``raw_input_contents`` or typed ``contents``.
The message classes are generated from ``proto/grpc_predict_v2.proto``
(``scripts/gen_grpc_stubs.py``); the service is registered here by hand.
"""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
from grpc import aio

from .. import __version__
from ..exceptions import PipelineError
from .errors import InvalidRequest, ModelNotReady
from .inference import Codec, codecs
from .protocol import Answer, InferRequest, Signature, add_input, check_complete, datatype_of, to_raw
from .proto import grpc_predict_v2_pb2 as pb

log = logging.getLogger("jupyter_pipeline.serving")

SERVICE = "inference.GRPCInferenceService"

#: gRPC status for each HTTP status the server's errors carry.
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}

# The typed field of InferTensorContents that carries each datatype (FP16 has none: raw only).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def decode_grpc(body: bytes, signature: Signature, _json_length: int | None = None) -> InferRequest:
    """Decode a serialized ``ModelInferRequest`` against ``signature``."""
    msg = _parse(body)
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidRequest(f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; "
                             "when used it must hold every input's data, in order.")
    if not msg.inputs:
        raise InvalidRequest("The request has no inputs.")
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(msg.inputs):
        if raw:
            add_input(inputs, signature, tensor.name, list(tensor.shape), tensor.datatype, raw=raw[i])
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise InvalidRequest(f"Input {tensor.name!r}: {tensor.datatype!r} values travel only in "
                                 "raw_input_contents.")
        values = getattr(tensor.contents, field)
        data = list(values) if tensor.datatype == "BYTES" else np.asarray(values)
        add_input(inputs, signature, tensor.name, list(tensor.shape), tensor.datatype, data=data)
    check_complete(inputs, signature)
    outputs = [o.name for o in msg.outputs] or None
    known = [s.name for s in signature.outputs]
    unknown = [o for o in outputs or [] if o not in known]
    if unknown:
        raise InvalidRequest(f"Unknown output(s) {', '.join(map(repr, unknown))}; this model's outputs are "
                             f"{', '.join(map(repr, known))}.")
    return InferRequest(inputs, outputs, msg.id or None)


def encode_grpc(name: str, version: int, signature: Signature, request: InferRequest,
                outputs: list[np.ndarray]) -> Answer:
    """A serialized ``ModelInferResponse``, every output in ``raw_output_contents``."""
    response = pb.ModelInferResponse(model_name=name, model_version=str(version), id=request.id or "")
    for spec, arr in request.selected(signature, outputs):
        response.outputs.add(name=spec.name, datatype=datatype_of(arr.dtype), shape=arr.shape)
        response.raw_output_contents.append(to_raw(arr))
    return Answer(response.SerializeToString())


def _parse(body: bytes):
    try:
        return pb.ModelInferRequest.FromString(body)
    except Exception:
        raise InvalidRequest("The request is not a valid ModelInferRequest message.") from None


def _model_and_version(body: bytes) -> tuple[str, str]:
    """``model_name`` and ``model_version`` of a serialized request, read without parsing the rest.

    Every protobuf implementation writes fields in field-number order, so these two come first;
    anything else falls back to a full parse.
    """
    values, at = {}, 0
    try:
        for tag in (0x0A, 0x12):  # field 1 and field 2, both length-delimited
            if at >= len(body) or body[at] != tag:
                continue
            length, shift, at = 0, 0, at + 1
            while True:
                byte = body[at]
                length |= (byte & 0x7F) << shift
                at += 1
                if byte < 0x80:
                    break
                shift += 7
            values[tag] = body[at:at + length].decode()
            at += length
    except (IndexError, UnicodeDecodeError):
        values = {}
    if 0x0A not in values:
        msg = _parse(body)
        return msg.model_name, msg.model_version
    return values[0x0A], values.get(0x12, "")


class InferenceService:
    """The servicer: each RPC of ``inference.GRPCInferenceService``."""

    def __init__(self, server):
        self.server = server

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.server.ready)

    async def ModelReady(self, request, context):
        try:
            await self.server.repository.resolve(request.name, request.version or None)
        except ModelNotReady:
            return pb.ModelReadyResponse(ready=False)
        except PipelineError as exc:
            await _abort(context, exc)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="jupyter-pipeline", version=__version__, extensions=[])

    async def ModelMetadata(self, request, context):
        repo = self.server.repository
        try:
            served = await repo.resolve(request.name, request.version or None)
            versions = sorted(repo.state(request.name).ready)
        except PipelineError as exc:
            await _abort(context, exc)
        tensors = [[pb.ModelMetadataResponse.TensorMetadata(**spec.to_json()) for spec in specs]
                   for specs in (served.signature.inputs, served.signature.outputs)]
        return pb.ModelMetadataResponse(name=request.name, versions=[str(v) for v in versions],
                                        platform=served.platform, inputs=tensors[0], outputs=tensors[1])

    async def ModelInfer(self, body: bytes, context) -> bytes:
        server = self.server
        started = time.perf_counter()
        server.grpc_in_flight += 1
        name, status = "-", 200
        try:
            name, version = _model_and_version(body)
            answer, _served, _state = await server.inference(name, version or None, codecs.get("grpc"), body)
            return answer.body
        except PipelineError as exc:
            status = exc.http_status
            await _abort(context, exc)
        except Exception:
            status = 500
            log.exception("uncaught error in gRPC ModelInfer")
            await context.abort(grpc.StatusCode.INTERNAL, "Internal server error; the server log has the details.")
        finally:
            server.grpc_in_flight -= 1
            server.metrics.observe_request(name, "grpc", status, time.perf_counter() - started)


async def _abort(context, exc: PipelineError):
    await context.abort(STATUS.get(exc.http_status, grpc.StatusCode.INTERNAL), str(exc))


def _handler(method, request_cls=None, response_cls=None):
    return grpc.unary_unary_rpc_method_handler(
        method, request_deserializer=request_cls.FromString if request_cls else None,
        response_serializer=response_cls.SerializeToString if response_cls else None)


async def start(server, address: str, port: int, max_message_bytes: int) -> tuple[aio.Server, int]:
    """Serve :class:`InferenceService` for ``server`` on ``address:port``; returns it and the bound port."""
    service = InferenceService(server)
    handlers = {name: _handler(getattr(service, name), getattr(pb, f"{name}Request"), getattr(pb, f"{name}Response"))
                for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata")}
    handlers["ModelInfer"] = _handler(service.ModelInfer)  # bytes in, bytes out
    grpc_server = aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])
    grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    host = f"[{address}]" if ":" in address else address
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}:{port}")
    await grpc_server.start()
    return grpc_server, bound


codecs.register("grpc", Codec("grpc", decode_grpc, encode_grpc))
