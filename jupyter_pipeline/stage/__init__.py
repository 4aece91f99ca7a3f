"""One stage: its generated notebook, how it executes, and what runs inside its kernel.

Built before a run:
- :mod:`.notebook` — the generated stage notebook (parameters, run context, setup, inputs, code, outputs)

Executes a stage (in a local stage worker, or in a Kubeflow component's pod):
- :mod:`.run` — papermill on one stage notebook against the store; keeps the executed notebook
- :mod:`.engine` — the papermill engine (nbclient's, keeping the notebook when cut short)
- :mod:`.gate` — whether a stage runs: its ``if:`` condition on the values upstream stages saved

Imported inside the stage's kernel (kept import-light):
- :mod:`.io` — what the generated cells call: activate the run, load inputs, save outputs
- :mod:`.workfolder` — a stage in a working folder of its own (an Elyra node): files in and out, scripts
- :mod:`.context` — the run context and ``log_metric``
- :mod:`.values` — the value savers (Keras, NumPy, Parquet, modules, cloudpickle)
- :mod:`.frameworks` — the Keras saver (with the notebook's custom objects) and XGBoost's DMatrix saver
- :mod:`.pickling` — the catch-all saver's pickler: notebook code by value, setup code by reference
- :mod:`.fanout` — ``map:`` items: how a value splits and how many there are
- :mod:`.replica` — inside a ``workers:N`` stage: rank, world size, barrier, Keras distribution
"""
