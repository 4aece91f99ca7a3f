"""The pickle saver's pickler: cached notebook functions travel by value, setup ones by reference."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys

import pytest

from jupyter_pipeline.stage.pickling import dumps, remember_setup
from jupyter_pipeline.store.base import open_store
from jupyter_pipeline.targets import get_target
from jupyter_pipeline.notebook.parse import load

CACHED = """
import functools, pickle, sys
from jupyter_pipeline.stage.pickling import dumps

@functools.lru_cache(maxsize=16)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

@functools.cache
def cube(n):
    return n ** 3

fib(20)
sys.stdout.buffer.write(dumps({"fib": fib, "cube": cube}))
"""

LOADED = """
import pickle, sys
values = pickle.loads(sys.stdin.buffer.read())
fib, cube = values["fib"], values["cube"]
assert fib(30) == 832040 and cube(3) == 27
assert fib.cache_parameters() == {"maxsize": 16, "typed": False}, fib.cache_parameters()
assert cube.cache_parameters() == {"maxsize": None, "typed": False}
assert fib.__wrapped__.__globals__["fib"] is fib  # the recursion goes through the same cache
print(fib.cache_info().hits > 0)
"""


def test_cached_notebook_functions_load_in_a_fresh_process():
    saved = subprocess.run([sys.executable, "-c", CACHED], capture_output=True, check=True)
    loaded = subprocess.run([sys.executable, "-c", LOADED], input=saved.stdout, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr.decode()
    assert loaded.stdout.decode().strip() == "True"


@functools.lru_cache
def importable_cached(n):
    return n + 1


def test_importable_and_setup_cached_functions_go_by_reference():
    assert pickle.loads(dumps(importable_cached)) is importable_cached  # found again by its module and name
    main = sys.modules["__main__"]

    @functools.cache
    def helper(n):
        return n

    helper.__module__, helper.__qualname__ = "__main__", "helper_for_test"
    main.helper_for_test = helper
    try:
        remember_setup({"helper_for_test": helper})
        assert pickle.loads(dumps(helper)) is helper  # a setup cell's: every stage has its own
    finally:
        remember_setup({})
        del main.helper_for_test


@pytest.mark.slow
@pytest.mark.parametrize("target", ["local", "kfp-local"])
def test_cached_functions_cross_stages(fixture_nb, store_dir, target):
    record = get_target(target).run(load(fixture_nb("cached_functions")), {}, open_store(store_dir), {},
                                    lambda *a: None)
    assert record.status.value == "succeeded", {n: r.error for n, r in record.stages.items()}
    assert record.stages["define"].outputs == ["Table", "cube", "fib", "square", "table", "warm"]
