"""An Elyra node's properties as a stage's options (:class:`~.pipeline.StageOptions`).

Elyra has written each list property two ways: as objects (``{"env_var": "A", "value": "1"}``,
Elyra 3.13 and later) and as strings (``"A=1"``, earlier files); both are read. What has no
equivalent here comes back as ``(property, what happens instead)`` notes for a warning.
"""

from __future__ import annotations

from .pipeline import StageOptions

GPU_RESOURCE = "nvidia.com/gpu"


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
