"""Baseline tools in their own virtual environments under ``benchmarks/.venvs/`` (git-ignored).

Kale and Elyra pin versions of kfp, jupyter_server and friends that clash with ours, so each is
installed from the package index into a venv of its own, on first use, and reused afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"


class BaselineUnavailable(RuntimeError):
    """Raised when a baseline tool cannot be installed or imported here; the message says why."""


def _tail(text: str, lines: int = 6) -> str:
    # pip repeats one warning per package for every unreachable extra index: drop that noise
    kept = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return "\n".join(kept[-lines:])


def baseline_python(name: str, requirement: str | list[str], probe: str, timeout: float = 900) -> Path:
    """The interpreter of venv ``name`` with ``requirement`` (one or several) installed and ``probe`` importable.

    Creates the venv and runs ``pip install requirement`` when the probe import fails; raises
    :class:`BaselineUnavailable` with pip's (or the import's) last lines when it still fails.
    """
    env_dir = VENVS / name
    python = env_dir / "bin" / "python"
    check = lambda: subprocess.run([str(python), "-c", f"import {probe}"], capture_output=True, text=True)
    if python.exists() and check().returncode == 0:
        return python
    VENVS.mkdir(exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True)
    requirements = [requirement] if isinstance(requirement, str) else list(requirement)
    requirement = " ".join(requirements)
    print(f"  installing {requirement} into {env_dir} ...", flush=True)
    try:
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              *requirements], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BaselineUnavailable(f"`pip install {requirement}` did not finish within {timeout:.0f} s") from None
    if pip.returncode:
        raise BaselineUnavailable(f"`pip install {requirement}` failed:\n{_tail(pip.stderr + pip.stdout)}")
    probe_run = check()
    if probe_run.returncode:
        raise BaselineUnavailable(f"`{requirement}` installed but `import {probe}` fails:\n{_tail(probe_run.stderr)}")
    return python


def installed_version(python: Path, distribution: str) -> str:
    out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"
