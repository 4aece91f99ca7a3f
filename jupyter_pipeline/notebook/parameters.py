"""Run parameters: check names against the ``parameters`` cell and type values like its literals."""

from __future__ import annotations

import ast
import json
import math

from ..exceptions import ParameterError
from .pipeline import Pipeline

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def coerce(pipeline: Pipeline, name: str, value):
    """``value`` (often a command-line string) as the type of parameter ``name``'s default."""
    param = pipeline.parameter(name)
    if param is None:
        known = ", ".join(p.name for p in pipeline.parameters) or "none (the notebook has no `parameters` cell)"
        raise ParameterError(f"{pipeline.path} has no parameter '{name}'; its parameters are: {known}.")
    if not isinstance(value, str) or param.type == "str":
        return _check_type(pipeline, param, value)
    text = value.strip()
    try:
        if param.type == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if param.type == "int":
            return int(text)
        if param.type == "float":
            return float(text)
        if param.type in ("list", "dict", "tuple"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = ast.literal_eval(text)
            return _check_type(pipeline, param, parsed)
        # None default: take any literal, else the string itself
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError):
        raise ParameterError(
            f"Parameter '{name}' of {pipeline.path} is {_article(param.type)} {param.type} "
            f"(default {param.default!r}); {value!r} is not {_article(param.type)} {param.type}."
        ) from None


def json_problem(value) -> str | None:
    """Why ``value`` cannot be a parameter value (None if it can): run records, the REST API and
    Kubeflow carry parameters as strict JSON, so numbers must be finite and dict keys strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number (JSON has no NaN or Infinity; use None or a finite bound)"
    if isinstance(value, (list, tuple)):
        return next((p for p in map(json_problem, value) if p), None)
    if isinstance(value, dict):
        if bad := [k for k in value if not isinstance(k, str)]:
            return f"its dict has the key {bad[0]!r}, which is not a string (JSON object keys are strings)"
        return next((p for p in map(json_problem, value.values()) if p), None)
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    instead = {"bytes": "a str", "set": "a list", "frozenset": "a list", "complex": "two floats or a list [re, im]"}
    kind = type(value).__name__
    return f"{value!r} is {_article(kind)} {kind}, which JSON cannot carry (use {instead.get(kind, 'a str')})"


def _check_json(pipeline: Pipeline, name: str, value):
    if problem := json_problem(value):
        raise ParameterError(f"Parameter '{name}' of {pipeline.path} cannot take this value: {problem}.")
    return value


def _article(type_name: str) -> str:
    return "an" if type_name[0] in "aeiou" else "a"


def _check_type(pipeline: Pipeline, param, value):
    expected = {"int": (int,), "float": (int, float), "bool": (bool,), "list": (list, tuple),
                "tuple": (list, tuple), "dict": (dict,), "str": (str,)}.get(param.type)
    if expected and (not isinstance(value, expected) or (param.type in ("int", "float") and isinstance(value, bool))):
        raise ParameterError(
            f"Parameter '{param.name}' of {pipeline.path} is {_article(param.type)} {param.type} "
            f"(default {param.default!r}); got {value!r}."
        )
    if param.type == "float" and isinstance(value, int):
        return float(value)
    return value


def resolve(pipeline: Pipeline, overrides: dict | None) -> dict:
    """Every parameter's value for a run: defaults, then ``overrides`` (checked and typed)."""
    values = {p.name: p.default for p in pipeline.parameters}
    for name, value in (overrides or {}).items():
        values[name] = _check_json(pipeline, name, coerce(pipeline, name, value))
    return values
