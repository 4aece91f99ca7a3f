"""Throughput of a large variable through the S3 store vs the plain ``minio`` SDK, same run.

    .venv/bin/python benchmarks/bench_store.py                  # 1 GiB, 3 repeats, moto on loopback
    .venv/bin/python benchmarks/bench_store.py --size-mb 256 --repeat 5
    .venv/bin/python benchmarks/bench_store.py --quick          # 64 MiB, 2 repeats (benchmarks/run.py --quick)
    .venv/bin/python benchmarks/bench_store.py --endpoint http://127.0.0.1:9000   # a running MinIO;
                                                # credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY

Without ``--endpoint`` it starts moto's S3 server in its own process on a free loopback port.
Each repeat uploads and downloads the same file once through ``S3Store.put_file``/``get_file``
and once through ``Minio.fput_object``/``fget_object`` (alternating which goes first) and the
script prints medians and the store/plain time ratio (the goal is <= 1.2).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import row, save_rows

from jupyter_pipeline.store.s3 import S3Settings, S3Store, client_for


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(0, size, len(block)):
            f.write(block[: min(len(block), size - i)])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoint", help="use this S3 server instead of starting moto")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mb, args.repeat = 64, 2

    proc = None
    if args.endpoint:
        settings = S3Settings.from_env({**os.environ, "JUPYTER_PIPELINE_S3_ENDPOINT": args.endpoint})
    else:
        proc, endpoint = start_moto()
        settings = S3Settings(endpoint=endpoint, access_key="bench", secret_key="bench-secret")
    bucket = f"jp-bench-{uuid.uuid4().hex[:8]}"
    store = S3Store(f"s3://{bucket}/store", settings)
    store.check()
    plain = client_for(settings)  # the same Minio client the store uses: same connection pool
    size = args.size_mb << 20
    rows: dict[str, list[float]] = {"store put": [], "plain put": [], "store get": [], "plain get": []}
    try:
        with tempfile.TemporaryDirectory(prefix="jp-bench-") as tmp:
            src, back = Path(tmp) / "value.npy", Path(tmp) / "back.npy"
            make_file(src, size)
            for i in range(args.repeat):
                def store_put():
                    rows["store put"].append(timed(lambda: store.put_file("runs/r/stages/s/vars/value.npy", src)))

                def plain_put():
                    rows["plain put"].append(timed(lambda: plain.fput_object(bucket, "plain/value.npy", str(src))))

                def store_get():
                    rows["store get"].append(timed(lambda: store.get_file("runs/r/stages/s/vars/value.npy", back)))
                    back.unlink()

                def plain_get():
                    rows["plain get"].append(timed(lambda: plain.fget_object(bucket, "plain/value.npy", str(back))))
                    back.unlink()

                order = [store_put, plain_put, store_get, plain_get] if i % 2 == 0 else \
                        [plain_put, store_put, plain_get, store_get]
                for step in order:
                    step()
                print(f"repeat {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                      flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait()

    med = {k: statistics.median(v) for k, v in rows.items()}
    mib = size / (1 << 20)
    print(f"\n{args.size_mb} MiB, {args.repeat} repeats, server {settings.endpoint} "
          f"({'moto, separate process' if proc else 'given'}); medians:")
    for k, v in med.items():
        print(f"  {k:10s} {v:7.2f} s  {mib / v:8.1f} MiB/s")
    print(f"  ratio store/plain: upload {med['store put'] / med['plain put']:.2f}, "
          f"download {med['store get'] / med['plain get']:.2f}  (goal <= 1.2)")
    server = "moto on loopback" if proc else "given S3 server"
    rows = [row(f"S3 store {op} of a {args.size_mb} MiB value ({server})", med[f"store {op}"], med[f"plain {op}"],
                "s", f"minio SDK f{op}_object", "goal <= 1.2") for op in ("put", "get")]
    save_rows("store", rows)
    return rows


if __name__ == "__main__":
    main()
