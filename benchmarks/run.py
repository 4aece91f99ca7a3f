"""Run every benchmark and write one table of ratios against baselines measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--out DIR]

Each benchmark runs in a child process of its own (a crash or a hung server stays contained, and
memory is returned between benchmarks), its output going to ``results/logs/NAME.log``. The table
(what, ours, the baseline and its figure, ratio = ours / baseline) is printed at the end and
written to ``DIR/results.md`` and ``DIR/results.json`` (``DIR`` is ``benchmarks/`` by default)
with the date, the machine (cores, load average at the start) and the mode. ``--only`` takes
names or prefixes (``core`` runs every ``core-*``). No benchmark asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


# -- the benchmarks: name -> (what it compares, function(quick) -> (rows, details)) ----------------
def _core(name: str):
    def run(quick: bool):
        import bench_core

        os.environ.setdefault("KERAS_BACKEND", "jax")
        with tempfile.TemporaryDirectory(prefix="jp-bench-core-") as tmp:
            fn = getattr(bench_core, name)
            return (fn(quick) if name == "bench_cli" else fn(Path(tmp), quick)), {}
    return run


def _store(quick: bool):
    import bench_store

    return bench_store.main(["--quick"] if quick else []), {}


def _kfp(quick: bool):
    import bench_kfp

    bench_kfp.main(["--quick", "--skip-runs"] if quick else [])
    return json.loads((HERE / "results" / "kfp.json").read_text()), {}


def _serving(quick: bool):
    import bench_serving

    with tempfile.TemporaryDirectory(prefix="jp-bench-serving-") as tmp:
        out = Path(tmp) / "serving.json"
        bench_serving.main((["--quick"] if quick else ["--mlserver"]) + ["--json", str(out)])
        res = json.loads(out.read_text())
    from common import row

    servers = res["servers"]
    ours, hits = servers["jupyter-pipeline serve (no cache)"], servers["jupyter-pipeline serve (cache hits)"]
    flask = servers["Flask + model.predict (baseline)"]
    base = "Flask + model.predict"
    load = "wrk" if res["generator"] == "run_wrk" else "Python threads (no wrk)"
    floor = res["floor"]["compiled (server's call path)"]["p50_us"] / 1000
    rows = [row("serve: p50 latency, 1 client", ours["1"]["p50_us"] / 1000, flask["1"]["p50_us"] / 1000, "ms", base,
                f"load generator: {load}"),
            row("serve: p50 latency, 64 clients", ours["64"]["p50_us"] / 1000, flask["64"]["p50_us"] / 1000, "ms",
                base)]
    rows += [row(f"serve: throughput, {c} clients", ours[c]["rps"], flask[c]["rps"], "req/s", base,
                 "higher is better") for c in ("1", "8", "64")]
    rows += [row("serve: p50 latency, 1 client, vs in-process call", ours["1"]["p50_us"] / 1000, floor, "ms",
                 "same compiled call in-process (floor)"),
             row("serve: throughput with cache hits, 64 clients", hits["64"]["rps"], ours["64"]["rps"], "req/s",
                 "same server, cache off", "higher is better")]
    mlserver = next((label for label in servers if label.startswith("MLServer")), None)
    if mlserver:
        base = mlserver.removesuffix(" (baseline)")
        rows += [row(f"serve: throughput, {c} clients", ours[c]["rps"], servers[mlserver][c]["rps"], "req/s", base,
                     "higher is better; MLServer with a Keras runtime (model.predict)") for c in ("1", "8", "64")]
    failed = {label: {c: cell["failed"] for c, cell in cells.items()} for label, cells in servers.items()}
    return rows, {"load_generator": load, "failed_requests": failed, **({"server_errors": res["server_errors"]}
                                                                         if "server_errors" in res else {})}


def _serving_drain(quick: bool):
    import bench_serving_drain

    with tempfile.TemporaryDirectory(prefix="jp-bench-drain-") as tmp:
        out = Path(tmp) / "drain.json"
        if bench_serving_drain.main((["--quick"] if quick else []) + ["--json", str(out)]) != 0:
            raise RuntimeError("wrk is not installed (apt-get install wrk)")
        res = json.loads(out.read_text())
    from common import row

    ours, flask = res["jupyter-pipeline serve"], res["Flask + model.predict (baseline)"]
    rows = [row("serve: answered/sent across SIGTERM, 64 connections", ours["median_ratio"], flask["median_ratio"],
                "", "Flask + model.predict", f"goal 1.0; lost {ours['lost_total']} of {ours['sent_total']} sent")]
    return rows, {}


def _serving_protocols(quick: bool):
    import bench_serving_protocols

    with tempfile.TemporaryDirectory(prefix="jp-bench-protocols-") as tmp:
        out = Path(tmp) / "protocols.json"
        bench_serving_protocols.main((["--quick"] if quick else []) + ["--json", str(out)])
        res = json.loads(out.read_text())
    from common import row

    one, big = res["latency_1_row"], res["latency_1000_rows"]
    flight = res["throughput_16_in_flight"]
    ms = lambda cell: cell["p50_us"] / 1000
    rows = [row("serve: p50 latency, 1 row, gRPC", ms(one["grpc"]), ms(one["rest-json"]), "ms", "REST, JSON"),
            row("serve: p50 latency, 1 row, REST binary tensors", ms(one["rest-binary"]), ms(one["rest-json"]), "ms",
                "REST, JSON"),
            row("serve: throughput, 1 row, 16 in flight, gRPC", flight["grpc"], flight["rest-binary"], "req/s",
                "REST, binary", "tritonclient's asyncio clients; higher is better"),
            row("serve: p50 latency, 1,000 rows, REST binary tensors", ms(big["rest-binary"]), ms(big["rest-json"]),
                "ms", "REST, JSON", "client encoding and decoding included (tritonclient)"),
            row("serve: p50 latency, 1,000 rows, gRPC", ms(big["grpc"]), ms(big["rest-json"]), "ms", "REST, JSON")]
    wrk = res.get("wrk_64_connections")
    if wrk:
        hits, off = wrk["cache hits"], wrk["cache off"]
        rows += [row("serve: cache hits, 64 connections (wrk)", hits["rps"], off["rps"], "req/s", "same server, cache off",
                     "higher is better"),
                 row("serve: cache hits per core (1 / server CPU per request)", 1e6 / hits["cpu_us_per_request"],
                     5000, "req/s", "goal", f"{hits['cpu_us_per_request']:.0f} µs of server CPU per hit")]
    return rows, {"load_average_at_end": res["load_average_at_end"]}


def _serving_sklearn(quick: bool):
    import bench_serving_sklearn

    with tempfile.TemporaryDirectory(prefix="jp-bench-sklearn-") as tmp:
        out = Path(tmp) / "sklearn.json"
        bench_serving_sklearn.main((["--quick"] if quick else []) + ["--json", str(out)])
        res = json.loads(out.read_text())
    from common import row

    (ours_label, ours), (base, theirs) = res["servers"].items()
    rows = [row(f"serve a scikit-learn model: throughput, {c} clients", ours[c]["rps"], theirs[c]["rps"], "req/s",
                base, "higher is better; cache off; ours answers label + probabilities") for c in ("1", "8", "32")]
    failed = {label: {c: cell["failed"] for c, cell in cells.items()} for label, cells in res["servers"].items()}
    return rows, {"load_generator": res["generator"], "failed_requests": failed}


def _kale(quick: bool):
    import bench_kale

    return bench_kale.bench_kale(quick)


def _local(quick: bool):
    import bench_local

    os.environ.setdefault("KERAS_BACKEND", "jax")
    return bench_local.bench_local(quick)


def _sweep(quick: bool):
    import bench_sweep

    os.environ.setdefault("KERAS_BACKEND", "jax")
    with tempfile.TemporaryDirectory(prefix="jp-bench-sweep-") as tmp:
        return bench_sweep.bench_sweep(Path(tmp), quick), {}


def _chain(quick: bool):
    import bench_chain

    return bench_chain.bench_chain(quick), {}


def _faults(quick: bool):
    import bench_faults

    return bench_faults.bench_faults(quick), {}


def _gang(quick: bool):
    import bench_gang

    return bench_gang.bench_gang(quick), {}


def _scaling(part: str):
    def run(quick: bool):
        import bench_scaling

        with tempfile.TemporaryDirectory(prefix="jp-bench-scaling-") as tmp:
            return getattr(bench_scaling, part)(Path(tmp), quick), {}
    return run


BENCHMARKS = {
    "core-validate": ("validate + graph an 80-stage notebook vs nbformat.read", _core("bench_validate")),
    "core-cli": ("CLI start-up vs python -c pass", _core("bench_cli")),
    "core-transfer": ("large NumPy value through the store vs np.save/np.load", _core("bench_transfer")),
    "core-values": ("functions and objects through the store vs plain pickle", _core("bench_values")),
    "core-overhead": ("local run of a chain vs one papermill run", _core("bench_stage_overhead")),
    "scaling-compile": ("validate/compile 10, 100, 1,000 stages", _scaling("bench_validate_compile")),
    "scaling-run": ("local run of 2, 8, 32 stages", _scaling("bench_run")),
    "kfp": ("KFP compile, kfp-local vs local run", _kfp),
    "sweep": ("6-variant sweep vs 6 independent runs", _sweep),
    "faults": ("dead stage kernel → stage failed vs a raised exception", _faults),
    "chain": ("6-stage chain vs one papermill run and the release's runner; client readiness", _chain),
    "gang": ("digits train on 2 workers vs 1; a gang's start-up to its first step", _gang),
    "kale": ("conversion vs Kubeflow Kale", _kale),
    "local": ("local run vs Elyra's local mode", _local),
    "store": ("S3 store vs plain minio SDK", _store),
    "serving": ("model server vs Flask and the in-process floor", _serving),
    "serving-protocols": ("gRPC vs REST, binary vs JSON tensors, cache hits per core", _serving_protocols),
    "serving-drain": ("requests answered across a SIGTERM under load vs Flask", _serving_drain),
    "serving-sklearn": ("a scikit-learn model over OIP v2 vs MLServer's scikit-learn runtime", _serving_sklearn),
}


# -- formatting -------------------------------------------------------------------------------------
def fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        if value < 0.001:
            return f"{value * 1e6:.0f} µs"
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3g} {unit}" if abs(value) < 1000 else f"{value:,.0f} {unit}"


def table(rows: list[dict], markdown: bool) -> str:
    head = ["benchmark", "what", "ours", "baseline (same run)", "ratio", "note"]
    body = [[r["bench"], r["what"], fmt(r["ours"], r["unit"]),
             f"{fmt(r['baseline'], r['unit'])} ({r['baseline_name']})" if r["baseline"] is not None else "-",
             f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-", r["note"]] for r in rows]
    if markdown:
        esc = lambda s: str(s).replace("|", "\\|")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(esc(c) for c in line) + " |" for line in body])
    widths = [max(len(str(line[i])) for line in [head] + body) for i in range(len(head) - 1)]
    out = []
    for line in [head] + body:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + str(line[-1]))
    return "\n".join(out)


def machine_facts() -> dict:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    mem = next((int(ln.split()[1]) // 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), None) if Path("/proc/meminfo").exists() else None
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": model, "memory_mib": mem, "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(), "commit": commit}


def notes(details: dict, failures: dict) -> list[str]:
    out = []
    kale = details.get("kale", {})
    if kale.get("unavailable"):
        out += ["### Kale", "", "Kale could not be compared here:", "", "```", kale["unavailable"], "```", ""]
    elif kale:
        out += ["### Conversion vs Kale", "",
                f"Kale {kale.get('kale_version')} (`kubeflow-kale` from the package index, own venv), compile-only "
                "path: `NotebookProcessor.run()` + `Compiler.compile()` (KFP DSL script) + "
                "`kfputils.compile_pipeline` (YAML), as `kale --nb` does without `--upload_pipeline`. Ours: "
                "`parse.load` + `compile_pipeline`. Both timed warm (median after one untimed conversion); "
                f"importing Kale once costs {kale.get('kale_import_s', 0):.1f} s more.", ""]
        for label, d in kale.get("notebooks", {}).items():
            if "kale_error" in d:
                out.append(f"- **{label}**: Kale failed: `{d['kale_error']}`")
                continue
            diff = d["differences"]
            same_inputs = not any(x.startswith(("inputs of", "... inputs")) for x in diff)
            out.append(f"- **{label}**: {d['stages']} stages in both; edges ours {d['edges_ours']}, Kale "
                       f"{d['edges_kale']}; " + ("the same input variables per stage; " if same_inputs else "")
                       + ("no differences." if not diff else "differences:"))
            out += [f"  - {x}" for x in diff]
        out.append("")
    local = details.get("local", {})
    if local:
        out += ["### Local execution", "", f"Baseline: {local.get('baseline')}. The baseline's notebooks are one per "
                "stage, passing values as pickle files (as Elyra users do) and running on the same kernel and "
                "libraries as ours."]
        for key in ("elyra_unavailable", "elyra_failed"):
            if local.get(key):
                out += ["", f"Elyra could not be used ({key}):", "", "```", local[key], "```"]
        out.append("")
    serving = details.get("serving", {})
    if serving:
        out += ["### Serving", "", f"Load generator: {serving['load_generator']}. Failed requests per server and "
                f"client count: `{json.dumps(serving['failed_requests'])}`."]
        if serving.get("server_errors"):
            out.append(f"Last errors logged by the servers: `{json.dumps(serving['server_errors'])}`.")
        out.append("")
    if failures:
        out += ["### Benchmarks that failed in this run", ""]
        for name, why in failures.items():
            out += [f"- **{name}**:", "", "```", why, "```"]
        out.append("")
    return out


def write_results(out_dir: Path, meta: dict, rows: list[dict], details: dict, durations: dict,
                  failures: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "details": details, "durations_s": durations, "failures": failures},
        indent=1, default=str) + "\n")
    m = meta["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    md = [
        "# Benchmark results", "",
        f"`python benchmarks/run.py{' --quick' if meta['quick'] else ''}"
        f"{' --only ' + ' '.join(meta['only']) if meta['only'] else ''}` on {meta['date']}, "
        f"{'quick' if meta['quick'] else 'full'} mode, commit `{m['commit']}`, {meta['total_s']:.0f} s in all.", "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_mib']} MiB RAM, load average at start {load} "
        f"(1/5/15 min), Python {m['python']}, {m['platform']}.", "",
        "Every baseline was measured in the same run. ratio = ours / baseline: for times (s, ms) lower is better, "
        "for MB/s and req/s higher is better. Scaling rows take the previous size as their baseline, so their "
        "ratio is the growth per step (linear cost: ratio = the step in stages).", "",
        table(rows, markdown=True), "",
        "Time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + ".", "",
        *notes(details, failures),
    ]
    (out_dir / "results.md").write_text("\n".join(md).rstrip() + "\n")


# -- running ----------------------------------------------------------------------------------------
def select(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    chosen = [n for n in BENCHMARKS if any(n == o or n.startswith(o + "-") for o in only)]
    unknown = [o for o in only if not any(n == o or n.startswith(o + "-") for n in BENCHMARKS)]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return chosen


def child(name: str, quick: bool, out: Path) -> None:
    rows, details = BENCHMARKS[name][1](quick)
    out.write_text(json.dumps({"rows": rows, "details": details}, default=str))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (< 3 min)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"some of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--out", type=Path, default=HERE, help="where results.md/results.json go (default benchmarks/)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.quick, args.child_out)
        return 0

    names = select(args.only)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick, "only": args.only or [], "machine": machine_facts()}
    logs = (HERE / "results" / "logs") if args.out.resolve() == HERE else args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows, details, durations, failures = [], {}, {}, {}
    start = time.perf_counter()
    print(f"{len(names)} benchmark(s), {'quick' if args.quick else 'full'} mode; load average "
          f"{meta['machine']['load_average_at_start'][0]:.2f} on {meta['machine']['cores']} cores; logs in {logs}",
          flush=True)
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}: {BENCHMARKS[name][0]} ...", end=" ", flush=True)
        t = time.perf_counter()
        result = logs / f"{name}.json"
        result.unlink(missing_ok=True)
        log = logs / f"{name}.log"
        cmd = [sys.executable, __file__, "--child", name, "--child-out", str(result)] + (["--quick"] if args.quick else [])
        try:
            with log.open("w") as f:
                proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                      timeout=600 if args.quick else 3600)
            failed = proc.returncode != 0 or not result.exists()
        except subprocess.TimeoutExpired:
            failed = True
        durations[name] = time.perf_counter() - t
        if failed:
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-8:])
            failures[name] = tail or "no output"
            print(f"FAILED after {durations[name]:.0f} s (see {log})", flush=True)
            continue
        data = json.loads(result.read_text())
        rows += [{"bench": name, **r} for r in data["rows"]]
        if data["details"]:
            details[name] = data["details"]
        print(f"{durations[name]:.0f} s", flush=True)
    meta["total_s"] = time.perf_counter() - start
    print()
    print(table(rows, markdown=False))
    if failures:
        print("\nfailed: " + ", ".join(failures))
    write_results(args.out, meta, rows, details, durations, failures)
    print(f"\n{meta['total_s']:.0f} s in all; wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
