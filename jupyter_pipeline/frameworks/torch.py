"""PyTorch: an ``nn.Module`` as a ``torch.export`` program (``model.pt2``), or TorchScript
(``model.pt``) when it cannot be exported, both made from an example input.

A module is code, so it is saved as the graph it computes on the example (with a free batch
dimension) and its weights; loading reads that graph back (``torch.export.load``, or
``torch.jit.load``'s restricted reader), never unpickles the user's classes. An example of one
row is doubled for export, which otherwise fixes a dimension of size 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Framework, ModelFormatError, Runtime, refuse_pickle, require, tensor


def _outputs(result) -> list:
    if isinstance(result, (tuple, list)):
        return list(result)
    if isinstance(result, dict):
        return list(result.values())
    return [result]


def _np_dtype(torch_dtype) -> np.dtype:
    import torch

    return torch.empty((), dtype=torch_dtype).numpy().dtype


class TorchFramework(Framework):
    name = "pytorch"
    package = "torch"
    extra = "torch"
    modules = ("torch",)
    filename = "model.pt2"
    kserve_format = "pytorch"
    platform = "pytorch"

    def matches(self, model) -> bool:
        import sys

        torch = sys.modules.get("torch")
        return torch is not None and isinstance(model, torch.nn.Module)

    def save(self, model, path: Path, example=None) -> dict:
        torch = require("torch", self)
        if example is None:
            raise ModelFormatError("log_model: a torch model needs an example input to be saved as a graph: "
                                   "log_model(model, name, example=x) with x a tensor (or array) of a few rows.")
        x = torch.as_tensor(np.asarray(example)) if not isinstance(example, torch.Tensor) else example
        model.eval()
        with torch.no_grad():
            outs = [o.detach() for o in _outputs(model(x))]
        inputs = [tensor("input", [None, *x.shape[1:]], _np_dtype(x.dtype))]
        outputs = [tensor(f"output_{i}" if len(outs) > 1 else "output", [None, *o.shape[1:]], _np_dtype(o.dtype))
                   for i, o in enumerate(outs)]
        signature = {"inputs": inputs, "outputs": outputs}
        wide = torch.cat([x, x]) if x.shape[0] == 1 else x
        try:
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(model, (wide,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(path))
            return {"signature": signature, "torch_format": "export"}
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
        script_path = path.with_suffix(".pt")
        try:
            torch.jit.save(torch.jit.trace(model, (wide,)), str(script_path))
        except Exception as exc:
            raise ModelFormatError(f"log_model: the torch model can be neither exported ({reason}) nor traced "
                                   f"to TorchScript ({' '.join(str(exc).split())[:200]}).") from None
        return {"signature": signature, "torch_format": "torchscript", "file": script_path.name,
                "export_error": reason}

    def load(self, path: Path, meta: dict, **options):
        torch = require("torch", self)
        what = f"Model {meta.get('name')} v{meta.get('version')}"
        refuse_pickle(path, what)
        try:
            if meta.get("torch_format") == "torchscript":
                return torch.jit.load(str(path), map_location="cpu")
            return torch.export.load(str(path)).module()
        except Exception as exc:
            raise ModelFormatError(f"{what}: {path.name} is not a readable {meta.get('torch_format')} "
                                   f"model: {' '.join(str(exc).split())[:300]}") from None

    def runtime(self, model, meta: dict) -> Runtime:
        torch = require("torch", self)
        signature = meta["signature"]

        def run(inputs):
            with torch.no_grad():
                # a request's array may be a read-only view of its body: torch wants its own
                result = model(torch.from_numpy(np.require(inputs["input"], requirements=["C", "W"])))
            return [o.detach().cpu().numpy() for o in _outputs(result)]
        return Runtime(signature, run)


FRAMEWORK = TorchFramework()
