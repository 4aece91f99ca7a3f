"""The local runner: a pipeline's stages executed on this machine, in parallel where they can be.

- :mod:`.runner` — runs a plan: the DAG loop, stage events, the run record
- :mod:`.launcher` — the processes a run's stages execute in, and stopping them
- :mod:`.pool` — warm stage processes started ahead of need (one stage each)
- :mod:`.worker` — the stage process itself (``python -m jupyter_pipeline.local.worker``)
- :mod:`.kernel` — the kernel a stage process starts ahead of its job
- :mod:`.zygote` / :mod:`.forkserver` — stage processes and kernels forked from a warm process
- :mod:`.sharedkernel` — ``--shared-kernel``: one kernel runs the stages one after another
- :mod:`.mapstages` — ``map:`` stages: each item in parallel, then the outputs gathered
- :mod:`.gang` — ``workers:N`` stages: N replicas started together
- :mod:`.lease` — which processes may still write a run; runs whose runner died marked interrupted
"""
