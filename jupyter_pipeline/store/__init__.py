"""The store: where run records, stage notebooks, values and models live.

- :mod:`.base` — the :class:`Store` interface, the local-folder store, ``open_store`` and the scheme registry
- :mod:`.s3` — the ``s3://bucket/prefix`` store on the ``minio`` SDK
- :mod:`.s3errors` — retries and one-line messages for what an S3 server answers
- :mod:`.records` — run records: types, store keys, lifecycle and persistence
- :mod:`.models` — the model registry (``models/<name>/<version>/``)
- :mod:`.attempts` — earlier attempts of a resumed run's stages (notebook and error), kept
- :mod:`.pending` — writes a store did not take (it stopped taking writes), kept on this machine until it does
- :mod:`.jsontext` — strict JSON (no bare NaN or Infinity) for records, REST bodies and ``--json``
"""
