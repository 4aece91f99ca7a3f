"""The notebook model: from a notebook's cells to a typed :class:`~.pipeline.Pipeline`.

Nothing here runs code; it reads notebooks and answers questions about them.

- :mod:`.tags` — cell tags (native, Kale, ``%%stage``) to roles, stages and options
- :mod:`.pod` — the pod options a stage's tags ask for (volumes, env, secrets, labels, ...)
- :mod:`.metadata` — the notebook's own settings (``metadata.jupyter_pipeline``, Kale's ``kubeflow_notebook``)
- :mod:`.analysis` — what each cell defines and reads (static analysis after IPython's transforms)
- :mod:`.binding` — each stage's free names bound to the stage above that defines them
- :mod:`.condition` — ``if:`` conditions: grammar (``ast``), evaluation without ``eval``, what they read
- :mod:`.parse` — nbformat → :class:`Pipeline`: tags, grouping, binding, cell-level problems
- :mod:`.compose` — ``notebook:`` cells: another notebook's cells read in place of the reference
  (nested, cycles found), per-notebook setup, settings, folders and qualified stage names
- :mod:`.elyra` — Elyra pipeline files (``*.pipeline``) → :class:`Pipeline`, a stage per node;
  :mod:`.elyra_options` maps a node's properties onto stage options
- :mod:`.validate` — pipeline-level checks (cycles, empty stages, ...)
- :mod:`.parameters` — run parameters checked and typed against the ``parameters`` cell
- :mod:`.pipeline` — the typed records: cells, stages, parameters, problems
- :mod:`.diagram` — the stage graph as text, DOT, Mermaid and SVG
"""
