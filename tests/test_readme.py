"""The README's first command, copied verbatim, works on a fresh clone with a fresh venv.

CI installs the test extras into its own venv, which would hide a dependency the example needs
but the package does not declare; this test installs exactly what the README says, in a clone
that has no venv, no node_modules and no built extension, with no variable of this test run
(PYTHONPATH, the venv on PATH, KERAS_BACKEND, Jupyter's user folders) leaking into it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def first_bash_block(readme: str) -> str:
    """The commands of the first ```bash block, comment lines left out."""
    match = re.search(r"^```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```bash block"
    return "\n".join(line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#"))


def fresh_clone(into: Path) -> Path:
    """A clone of this repository with the working tree's uncommitted changes to tracked files applied."""
    clone = into / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    changes = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--binary"], check=True, capture_output=True).stdout
    if changes.strip():
        subprocess.run(["git", "-C", str(clone), "apply", "--whitespace=nowarn", "-"], input=changes, check=True)
    return clone


def newcomer_environment(scratch: Path) -> dict:
    """The environment of someone who has only a system Python: none of this test run's settings."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KERAS_BACKEND", "PYTHONHOME")
           and not k.startswith(("JUPYTER_", "JUPYTER_PIPELINE_", "JP_", "PYTEST"))}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    for name in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(scratch / name.lower())  # no kernels or settings from this machine's user folders
    env["JUPYTER_PIPELINE_STORE"] = str(scratch / "store")
    return env


@pytest.mark.timeout(1800)
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_first_command_runs_the_example_on_a_fresh_clone(tmp_path):
    command = first_bash_block((ROOT / "README.md").read_text())
    assert "jupyter-pipeline run examples/digits/digits.ipynb" in command
    clone = fresh_clone(tmp_path)
    assert not (clone / ".venv").exists() and not (clone / "node_modules").exists()
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", command], cwd=clone, env=newcomer_environment(tmp_path),
                          capture_output=True, text=True, timeout=1700)
    seconds = time.monotonic() - started
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
    assert proc.returncode == 0, f"README command failed after {seconds:.0f} s:\n{tail}"
    assert re.search(r"^run \S+-digits-\S+ succeeded$", proc.stdout, re.MULTILINE), tail
    assert re.search(r"accuracy=0\.\d+", proc.stdout + proc.stderr), tail
    print(f"README's first command succeeded in {seconds:.0f} s")
