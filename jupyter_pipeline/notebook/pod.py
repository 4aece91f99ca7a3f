"""Pod options of a stage on Kubernetes: what its tags (and ``%%stage`` flags) say about its pod.

``volume:CLAIM:/path`` (an existing claim), ``env:NAME=VALUE``, ``secret:SECRET:KEY:ENV`` and
``secret:SECRET:/path``, ``label:KEY:VALUE`` and ``annotation:KEY:VALUE`` (keys may hold ``/``),
``node:KEY=VALUE``, ``toleration:KEY[=VALUE]:EFFECT`` and ``shm:SIZE``. Each parser reads one tag
into the cell's options (fields of :class:`~jupyter_pipeline.notebook.pipeline.StageOptions`) or records
a problem that says how to write it. The notebook-wide equivalents are notebook settings
(:mod:`jupyter_pipeline.notebook.metadata`); the KFP compiler applies both with kfp-kubernetes.
"""

from __future__ import annotations

import re

QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
# Kubernetes label/annotation keys: an optional DNS-subdomain prefix and '/', then a name.
_K8S_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
METADATA_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_K8S_NAME}$")
LABEL_VALUE_RE = re.compile(rf"^({_K8S_NAME})?$")
#: Names of secrets and claims: DNS subdomains.
RESOURCE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SECRET_KEY_RE = re.compile(r"^[-._A-Za-z0-9]+$")
#: Environment variable names Kubernetes accepts.
ENV_NAME_RE = re.compile(r"^[-._A-Za-z][-._A-Za-z0-9]*$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
ANY_RE = re.compile(r"^.*$", re.S)


def metadata(spec, tag: str, kind: str, text: str) -> None:
    """``label:KEY:VALUE`` and ``annotation:KEY:VALUE`` (the key may hold '/', the value ':')."""
    key, sep, value = text.partition(":")
    if not sep or not METADATA_KEY_RE.match(key):
        spec.problem(f"tag '{tag}': write {kind}:KEY:VALUE, where KEY is a Kubernetes {kind} key "
                     "such as 'team' or 'example.com/team'")
        return
    if kind == "label" and not LABEL_VALUE_RE.match(value):
        spec.problem(f"tag '{tag}': a label value has at most 63 letters, digits, '-', '_' or '.', "
                     "and starts and ends with a letter or digit")
        return
    spec.add_option(kind + "s", key, value)


def secret(spec, tag: str, text: str) -> None:
    """``secret:NAME:KEY:ENV`` (one key as an environment variable) or ``secret:NAME:/path`` (files)."""
    parts = text.split(":")
    if len(parts) == 2 and parts[1].startswith("/") and RESOURCE_NAME_RE.match(parts[0]):
        entry = {"name": parts[0], "path": parts[1]}
    elif (len(parts) == 3 and RESOURCE_NAME_RE.match(parts[0]) and SECRET_KEY_RE.match(parts[1])
          and ENV_NAME_RE.match(parts[2])):
        entry = {"name": parts[0], "key": parts[1], "env": parts[2]}
    else:
        spec.problem(f"tag '{tag}': write secret:NAME:KEY:ENV (one key of Kubernetes secret NAME as "
                     "environment variable ENV) or secret:NAME:/path (its keys as files under /path)")
        return
    spec.add_entry("secrets", entry)


def volume(spec, tag: str, text: str) -> None:
    """``volume:CLAIM:/mount/path``: an existing PersistentVolumeClaim."""
    claim, sep, path = text.partition(":")
    if not sep or not RESOURCE_NAME_RE.match(claim) or not path.startswith("/"):
        spec.problem(f"tag '{tag}': write volume:CLAIM:/mount/path, where CLAIM is an existing "
                     "PersistentVolumeClaim (lowercase letters, digits, '-', '.')")
        return
    spec.add_entry("volumes", {"name": claim, "mount_path": path})


def _assignment(spec, tag: str, text: str, option: str, name_re, value_re, usage: str) -> None:
    """``NAME=VALUE`` into the mapping option ``option``, or a problem showing ``usage``."""
    name, sep, value = text.partition("=")
    if not sep or not name_re.match(name) or not value_re.match(value):
        spec.problem(f"tag '{tag}': {usage}")
        return
    spec.add_option(option, name, value)


def env(spec, tag: str, text: str) -> None:
    """``env:NAME=VALUE`` (the value may be empty and may hold '=' and ':')."""
    _assignment(spec, tag, text, "env", ENV_NAME_RE, ANY_RE, "write env:NAME=VALUE, where NAME is letters, "
                "digits, '_', '-' or '.', not starting with a digit")


def node(spec, tag: str, text: str) -> None:
    """``node:KEY=VALUE``: a node selector label."""
    _assignment(spec, tag, text, "node_selector", METADATA_KEY_RE, LABEL_VALUE_RE,
                "write node:KEY=VALUE, a node label such as node:cloud.google.com/gke-nodepool=ml")


def toleration(spec, tag: str, text: str) -> None:
    """``toleration:KEY[=VALUE]:EFFECT``: tolerate a node taint (the key may hold '/')."""
    keyvalue, sep, effect = text.rpartition(":")
    key, equals, value = keyvalue.partition("=")
    if not sep or effect not in TAINT_EFFECTS or not METADATA_KEY_RE.match(key) or (
            equals and not LABEL_VALUE_RE.match(value)):
        spec.problem(f"tag '{tag}': write toleration:KEY[=VALUE]:EFFECT, where EFFECT is one of "
                     f"{', '.join(TAINT_EFFECTS)}, e.g. toleration:dedicated=ml:NoSchedule")
        return
    spec.add_entry("tolerations", toleration_entry(key, value if equals else None, effect))


def toleration_entry(key: str, value: str | None, effect: str | None, seconds: int | None = None) -> dict:
    """A toleration as a pod spec writes it (``Equal`` with a value, ``Exists`` without)."""
    entry = {"key": key, "operator": "Equal" if value is not None else "Exists"}
    if value is not None:
        entry["value"] = value
    if effect is not None:
        entry["effect"] = effect
    if seconds is not None:
        entry["tolerationSeconds"] = seconds
    return entry


def shm(spec, tag: str, text: str) -> None:
    """``shm:SIZE``: a memory-backed ``/dev/shm`` of that size (PyTorch data loaders need more than 64M)."""
    if not QUANTITY_RE.match(text):
        spec.problem(f"tag '{tag}': '{text}' is not a Kubernetes quantity (e.g. 1Gi, 512Mi)")
        return
    spec.options["shm"] = text


#: Tag key -> parser ``(spec, tag, value)``.
TAGS = {
    "label": lambda spec, tag, value: metadata(spec, tag, "label", value),
    "annotation": lambda spec, tag, value: metadata(spec, tag, "annotation", value),
    "secret": secret, "volume": volume, "env": env, "node": node, "toleration": toleration, "shm": shm,
}
#: ``%%stage`` flags (repeatable where a tag is) that stand for these tags.
MAGIC_FLAGS = {"volume": "CLAIM:/path", "env": "NAME=VALUE", "secret": "SECRET:KEY:ENV|SECRET:/path",
               "label": "KEY:VALUE", "annotation": "KEY:VALUE", "node": "KEY=VALUE",
               "toleration": "KEY[=VALUE]:EFFECT", "shm": "SIZE"}


def tolerations_setting(value) -> list[dict]:
    """The notebook setting ``tolerations``: ``[{"key", "operator"?, "value"?, "effect"?,
    "toleration_seconds"?}]``, as in a pod spec (``tolerationSeconds`` accepted too)."""
    expected = ("a list of tolerations, each {\"key\": K, \"value\"?: V, \"effect\"?: one of "
                f"{', '.join(TAINT_EFFECTS)}, \"operator\"?: \"Equal\" or \"Exists\"}}")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(expected)
    out = []
    for t in value:
        key, val, effect = t.get("key"), t.get("value"), t.get("effect")
        seconds = t.get("toleration_seconds", t.get("tolerationSeconds"))
        operator = t.get("operator", "Equal" if val is not None else "Exists")
        if (not isinstance(key, str) or not METADATA_KEY_RE.match(key) or operator not in ("Equal", "Exists")
                or (effect is not None and effect not in TAINT_EFFECTS)
                or (val is not None and not isinstance(val, str)) or (operator == "Exists" and val is not None)
                or (seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)))):
            raise ValueError(expected)
        out.append(toleration_entry(key, val if operator == "Equal" else None, effect, seconds))
    return out


__all__ = ["TAGS", "MAGIC_FLAGS", "METADATA_KEY_RE", "LABEL_VALUE_RE", "tolerations_setting", "toleration_entry"]
