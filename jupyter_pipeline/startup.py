"""Start-up time of our own processes (the CLI, each stage's runner process).

``jsonschema`` (imported by nbformat) optionally imports ``rfc3987_syntax``, which compiles a
grammar at import time: 1.5–4 s on this project's 2-core machines, paid by every stage. It only
validates the ``iri`` string format, which notebook schemas never use, so our processes skip it.
Library imports (a Jupyter server loading the extension) are left untouched.
"""

from __future__ import annotations

import sys

SLOW_OPTIONAL_MODULES = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    for name in SLOW_OPTIONAL_MODULES:
        # None in sys.modules makes `import name` raise ImportError, which jsonschema tolerates.
        sys.modules.setdefault(name, None)
