"""An Elyra node: its links, its properties over the pipeline's defaults, and those properties as a
stage's options (:class:`~.pipeline.StageOptions`).

Elyra has written each list property two ways: as objects (``{"env_var": "A", "value": "1"}``,
Elyra 3.13 and later) and as strings (``"A=1"``, earlier files); both are read. What has no
equivalent here comes back as ``(property, what happens instead)`` notes for a warning.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .pipeline import StageOptions

GPU_RESOURCE = "nvidia.com/gpu"


class Node:
    """One execution node, its properties merged over the pipeline's defaults."""

    def __init__(self, raw: dict, defaults: dict):
        app = raw.get("app_data") if isinstance(raw.get("app_data"), dict) else {}
        self.id = str(raw.get("id", ""))
        self.type, self.op = raw.get("type"), raw.get("op")
        params = app.get("component_parameters") if isinstance(app.get("component_parameters"), dict) else {}
        self.params = _merged(params, defaults)
        self.filename = str(self.params.get("filename") or "")
        ui = app.get("ui_data") if isinstance(app.get("ui_data"), dict) else {}
        self.label = str(app.get("label") or ui.get("label") or PurePosixPath(self.filename).name or self.id)
        self.parents = linked(raw.get("inputs") or [])

    def __str__(self) -> str:
        file = f" ({self.filename})" if self.filename and self.filename != self.label else ""
        return f"node '{self.label}'{file}"


def linked(ports: list, port_id: str | None = None) -> list[str]:
    """The nodes linked into ``ports`` (only the port ``port_id``, when given). A link names a node's
    ``outPort``, or ``<node id>_outPort`` of a supernode for the node inside it that it leaves from;
    links to a supernode's binding ports lead nowhere (Elyra's parser reads them the same way)."""
    out = []
    for port in ports:
        if not isinstance(port, dict) or (port_id is not None and port.get("id") != port_id):
            continue
        for link in port.get("links") or []:
            ref = link.get("port_id_ref", "outPort") if isinstance(link, dict) else None
            if ref == "outPort" and link.get("node_id_ref"):
                out.append(str(link["node_id_ref"]))
            elif isinstance(ref, str) and ref.endswith("_outPort") and not ref.startswith(("input_", "output_")):
                out.append(ref[: -len("_outPort")])
    return out


def _merged(node: dict, defaults: dict) -> dict:
    """Elyra's propagation of ``pipeline_defaults``: a node's own value wins; lists of items add the
    defaults' entries whose key the node does not set."""
    out = dict(node)
    for key, default in defaults.items():
        mine = out.get(key)
        if mine in (None, "", [], {}):
            out[key] = default
        elif isinstance(mine, list) and isinstance(default, list):
            seen = {_item_key(key, e) for e in mine}
            out[key] = mine + [e for e in default if _item_key(key, e) not in seen]
    return out


def _item_key(prop: str, entry) -> str:
    if isinstance(entry, str):
        return entry.split("=", 1)[0]
    if not isinstance(entry, dict):
        return repr(entry)
    field = {"env_vars": "env_var", "kubernetes_secrets": "env_var", "mounted_volumes": "path"}.get(prop, "key")
    return str(entry.get(field))


def _number(value):
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if number < 0:
        raise ValueError
    return int(number) if number == int(number) else number


def _pairs(items, first: str, second: str) -> list[tuple[str, str]]:
    """``[(key, value)]`` of a list of ``{first, second}`` objects or ``"key=value"`` strings."""
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
        elif isinstance(item, dict):
            key, value = item.get(first), item.get(second)
        else:
            continue
        if key:
            out.append((str(key).strip(), "" if value is None else str(value).strip()))
    return out


def _objects(items, fields: tuple[str, ...]) -> list[dict]:
    """A list of objects, or of ``"ID=a:b:c"`` / ``"a=b"`` strings split into ``fields``."""
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, str) and "=" in item:
            left, _, right = item.partition("=")
            parts = right.split(":")
            if fields == ("path", "pvc_name"):
                out.append({"path": left, "pvc_name": right})
            elif fields == ("env_var", "name", "key"):
                out.append({"env_var": left, "name": parts[0], "key": ":".join(parts[1:])})
            else:  # tolerations: TOL_ID=key:operator:value:effect
                out.append(dict(zip(fields, parts + [""] * (len(fields) - len(parts)))))
    return out


def node_options(p: dict) -> tuple[StageOptions, dict, tuple, list[tuple[str, str]]]:
    """``(options, env, secret_env, notes)`` of a node's merged properties ``p``: ``env`` is every
    environment variable the node sets (its working folder sets them, locally too), ``secret_env``
    the names a Kubernetes secret sets on a pod (which win there, as in Elyra)."""
    values: dict = {}
    notes: list[tuple[str, str]] = []
    if p.get("runtime_image"):
        values["image"] = str(p["runtime_image"])
    for key, unit in (("cpu", ""), ("memory", "G")):
        if p.get(key) not in (None, ""):
            try:
                values[key] = f"{_number(p[key])}{unit}"
            except (TypeError, ValueError):
                notes.append((f"`{key}`", f"is {p[key]!r}, not a positive number; ignored"))
    for key in ("cpu_limit", "memory_limit"):
        if p.get(key) not in (None, ""):
            notes.append((f"`{key}`", "has no equivalent: a stage's cpu and memory are both its request and its "
                                      "limit; the limit is ignored"))
    if p.get("gpu") not in (None, "", 0, "0"):
        try:
            values["gpu"] = int(_number(p["gpu"]))
        except (TypeError, ValueError):
            notes.append(("`gpu`", f"is {p['gpu']!r}, not a whole number; ignored"))
    vendor = str(p.get("gpu_vendor") or "").strip()
    if vendor and vendor != GPU_RESOURCE:
        if "/" in vendor:
            values["gpu_type"] = vendor  # a resource name: the accelerator itself (kfp/placement.py)
        else:
            notes.append(("`gpu_vendor`", f"{vendor!r} is not a Kubernetes resource name (like amd.com/gpu); "
                                          f"{GPU_RESOURCE} is used"))
    env = {k: v for k, v in _pairs(p.get("env_vars"), "env_var", "value") if v}  # Elyra drops empty ones
    secrets = [{"name": str(s.get("name")), "key": str(s.get("key")), "env": str(s.get("env_var"))}
               for s in _objects(p.get("kubernetes_secrets"), ("env_var", "name", "key"))
               if s.get("env_var") and s.get("name") and s.get("key")]
    secret_env = tuple(s["env"] for s in secrets)
    values["env"] = {k: v for k, v in env.items() if k not in secret_env}
    values["secrets"] = tuple(secrets)
    volumes = []
    for v in _objects(p.get("mounted_volumes"), ("path", "pvc_name")):
        if not v.get("path") or not v.get("pvc_name"):
            continue
        volume = {"name": str(v["pvc_name"]), "mount_path": str(v["path"])}
        if v.get("sub_path"):
            volume["sub_path"] = str(v["sub_path"])
        if v.get("read_only"):
            notes.append(("`mounted_volumes`", f"asks for {v['path']} read-only, which has no equivalent here: "
                                               "it is mounted read-write"))
        volumes.append(volume)
    values["volumes"] = tuple(volumes)
    values["labels"] = dict(_pairs(p.get("kubernetes_pod_labels"), "key", "value"))
    values["annotations"] = dict(_pairs(p.get("kubernetes_pod_annotations"), "key", "value"))
    tolerations = []
    for t in _objects(p.get("kubernetes_tolerations"), ("key", "operator", "value", "effect")):
        entry = {"key": t.get("key") or None, "operator": t.get("operator") or "Equal"}
        if t.get("value"):
            entry["value"] = str(t["value"])
        if t.get("effect"):
            entry["effect"] = str(t["effect"])
        tolerations.append(entry)
    values["tolerations"] = tuple(tolerations)
    shm = p.get("kubernetes_shared_mem_size")
    if isinstance(shm, dict) and shm.get("size") not in (None, "", 0):
        try:
            values["shm"] = f"{_number(shm['size'])}{shm.get('units') or 'G'}"
        except (TypeError, ValueError):
            notes.append(("`kubernetes_shared_mem_size`", f"has size {shm['size']!r}, not a number; ignored"))
    if str(p.get("disable_node_caching", "")).lower() == "true":
        values["cache"] = False
    return StageOptions(**values), env, secret_env, notes
