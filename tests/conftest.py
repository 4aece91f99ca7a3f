"""Shared fixtures. Feature-specific fixtures live in their own plugin modules listed below."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(Path(__file__).resolve().parent))

# One line per feature plugin module (tests/plugin_*.py).
pytest_plugins = [
    "plugin_s3",
    "plugin_kubernetes",
]

os.environ.setdefault("KERAS_BACKEND", "jax")
# Keep kernels and BLAS from fighting over the 2 cores when stages run in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


@pytest.fixture
def store_dir(tmp_path):
    """A fresh local store folder."""
    path = tmp_path / "store"
    return str(path)


@pytest.fixture
def fixture_nb():
    """Path of a fixture notebook by name: ``fixture_nb("cycle")``."""
    def get(name: str) -> Path:
        path = FIXTURES / f"{name}.ipynb"
        assert path.exists(), path
        return path
    return get


@pytest.fixture(scope="session")
def write_notebook():
    """Write a notebook of ``(tags, source)`` code cells: ``write_notebook(path, [(["stage:a"], "x = 1")])``.
    Session-scoped (it holds no state), so module-scoped fixtures may use it too."""
    def write(path: Path, cells: list[tuple[list[str], str]]) -> Path:
        import nbformat
        from nbformat.v4 import new_code_cell, new_notebook

        out = []
        for tags, source in cells:
            cell = new_code_cell(source)
            cell.metadata["tags"] = tags
            out.append(cell)
        nbformat.write(new_notebook(cells=out), path)
        return path
    return write
