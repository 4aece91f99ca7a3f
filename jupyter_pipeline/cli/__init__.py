"""``jupyter-pipeline``: the command line. Each command group lives in a module of this package
with a ``register(subparsers, common)`` function; modules import heavy libraries only inside
their handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .output import error_json, fail, print_json, report_error

#: Command modules, in help order.
COMMAND_MODULES = ["core", "debug", "models", "kfp", "serve"]

EPILOG = """examples:
  jupyter-pipeline validate examples/digits/digits.ipynb
  jupyter-pipeline graph examples/digits/digits.ipynb --format mermaid
  jupyter-pipeline run examples/digits/digits.ipynb -p epochs 3
  jupyter-pipeline runs                      # newest first
  jupyter-pipeline resume RUN_ID             # re-run what failed
  jupyter-pipeline debug RUN_ID STAGE        # a notebook with the stage's inputs and code

Every command takes --json for machine-readable output; exit status is 0 only on success."""


def common_parser() -> argparse.ArgumentParser:
    """Options every subcommand accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    common.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-pipeline",
        description="Turn a notebook whose cells are tagged as stages into a pipeline; run it locally, "
                    "with kfp.local or on Kubeflow Pipelines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"jupyter-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    commands: dict[str, argparse.ArgumentParser] = {}
    modules = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue  # a command group not built yet
        modules.append(module)
        commands.update(module.register(sub, common) or {})
    for module in modules:  # let groups add options to other groups' commands (e.g. run --target kfp)
        if hasattr(module, "extend"):
            module.extend(commands)
    return parser


def _interrupt_once() -> dict:
    """Ctrl-C and SIGTERM end a command with KeyboardInterrupt, once: a run then stops its stages and
    writes its record as cancelled, which a second one must not cut short (it printed a traceback and
    left the record `running`); later ones only say that it is stopping. Returns the handlers replaced."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    raised = []

    def interrupt(signum, frame):
        if raised:
            print("stopping (a run stops its stages and writes its record; a server finishes its requests): "
                  "seconds; kill -9 ends at once", file=sys.stderr)
            return
        raised.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, interrupt)
    return previous


def _wind_down_quietly() -> None:
    """Ignore Ctrl-C and SIGTERM once the command has ended: a second one, while the process exits (the
    zygote and stage processes stopping, each within seconds), printed a traceback from an exit hook."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    from ..startup import default_keras_backend, skip_slow_optional_imports

    skip_slow_optional_imports()
    default_keras_backend()  # for stages started from here, and `serve`/`models` loading Keras models
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    replaced = _interrupt_once()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if getattr(args, "json", False):
            print_json(error_json(exc))  # --json: stdout always holds one JSON object
        if isinstance(exc, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return 130
        return report_error(exc, debug=getattr(args, "debug", False))
    finally:
        import signal

        for sig, handler in replaced.items():  # callers in this process keep their own
            signal.signal(sig, handler)


def run() -> None:  # console-script entry point used by `jupyter pipeline`
    code = main()
    _wind_down_quietly()  # (not in main: callers in this process keep their own Ctrl-C)
    sys.exit(code)


__all__ = ["main", "fail"]
