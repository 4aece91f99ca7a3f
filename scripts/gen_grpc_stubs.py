#!/usr/bin/env python
"""Regenerate jupyter_pipeline/serving/proto/grpc_predict_v2_pb2.py from grpc_predict_v2.proto.

    pip install grpcio-tools && python scripts/gen_grpc_stubs.py

Only the message classes are generated (the service is registered by hand in
jupyter_pipeline/serving/grpc.py). They are built in a descriptor pool of their own: other
packages define the same ``inference.*`` messages (tritonclient, the KServe SDK), and two
definitions of one name in protobuf's default pool cannot live in one process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "jupyter_pipeline" / "serving" / "proto"
NAME = "grpc_predict_v2"


def main() -> int:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={PROTO_DIR}",
                    f"--pyi_out={PROTO_DIR}", f"{NAME}.proto"], check=True)
    out = PROTO_DIR / f"{NAME}_pb2.py"
    text = out.read_text()
    text, n = re.subn(r"_descriptor_pool\.Default\(\)\.AddSerializedFile\(",
                      "_POOL.AddSerializedFile(", text)
    if n != 1:
        raise SystemExit(f"unexpected protoc output in {out}: no AddSerializedFile call on the default pool")
    text = text.replace("_sym_db = _symbol_database.Default()\n",
                        "_sym_db = _symbol_database.Default()\n"
                        "_POOL = _descriptor_pool.DescriptorPool()  # private: see scripts/gen_grpc_stubs.py\n")
    out.write_text(text)
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
