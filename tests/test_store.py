"""The local folder store: what its files look like to other people sharing the folder."""

from __future__ import annotations

import os
import stat
import time

import pytest

from jupyter_pipeline.store.base import open_store


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    store = open_store(str(tmp_path / "store"))
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 10)
    old = os.umask(umask)
    try:
        store.put_bytes("runs/r/run.json", b"{}")
        store.put_file("runs/r/stages/s/output.ipynb", source)
        store.create_exclusive("models/m/1/meta.json", b"{}")
    finally:
        os.umask(old)
    for key in ("runs/r/run.json", "runs/r/stages/s/output.ipynb", "models/m/1/meta.json"):
        assert stat.S_IMODE((tmp_path / "store" / key).stat().st_mode) == mode, key
    assert stat.S_IMODE((tmp_path / "store" / "runs" / "r").stat().st_mode) == 0o777 & ~umask


def test_store_patience_is_a_setting(monkeypatch):
    from jupyter_pipeline.exceptions import StoreError
    from jupyter_pipeline.store.base import patiently

    calls = []

    def down():
        calls.append(time.monotonic())
        error = StoreError("store down")
        error.transient = True
        raise error

    monkeypatch.setenv("JUPYTER_PIPELINE_STORE_PATIENCE", "0")
    with pytest.raises(StoreError, match="store down"):
        patiently(down)
    assert len(calls) == 1  # no patience: the first transient failure is final
    monkeypatch.setenv("JUPYTER_PIPELINE_STORE_PATIENCE", "1.2")
    calls.clear()
    with pytest.raises(StoreError, match="store down"):
        patiently(down)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.5  # tried again after a pause, within 1.2 s
    monkeypatch.setenv("JUPYTER_PIPELINE_STORE_PATIENCE", "soon")
    with pytest.raises(StoreError, match=r"JUPYTER_PIPELINE_STORE_PATIENCE\) must be a number of seconds.*'soon'"):
        patiently(down)
