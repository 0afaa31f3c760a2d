"""Markdown table of benchmark JSON lines (benchmarks.run output), for RESULTS.md.

    python -m benchmarks.report [benchmarks/results.jsonl] [--device=SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import os

COLUMNS = ("system", "params", "batch", "compile s (jax / torch)", "step ms p50 (p10-p90)",
           "samples/s", "PyTorch samples/s", "jaxtrain / PyTorch", "XLA GFLOP/sample",
           "MFU", "input", "input samples/s (per core)", "host ms/step",
           "cores to feed", "input wait", "infer ms/record", "peak MB")


def row(r: dict) -> str:
    ref = r.get("reference") or {}
    name = r["system"] if r.get("model") in (None, r["system"]) else f"{r['system']} {r['model']}"
    cells = [
        name, f"{r['params']:,}" if "params" in r else "-", str(r["batch_size"]),
        f"{r['compile_s']:.1f} / {ref['compile_s']:.1f}" if ref else f"{r['compile_s']:.1f}",
        f"{r['step_ms_p50']:.1f} ({r['step_ms_p10']:.1f}-{r['step_ms_p90']:.1f})",
        f"{r['samples_per_s_throughput']:,.0f}",
        f"{ref['samples_per_s_throughput']:,.0f}" if ref else "-",
        f"{r['ratio_vs_torch']:.2f}" if "ratio_vs_torch" in r else "-",
        f"{r['xla_flops_per_sample'] / 1e9:.3f}", f"{100 * r['mfu_vs_matmul_peak']:.0f}%",
        r.get("train_read", "-"),
        f"{r['input_samples_per_s']:,.0f}" + (f" ({r['input_samples_per_core_s']:,.0f})"
                                              if "input_samples_per_core_s" in r else ""),
        f"{r['input_host_ms_per_step']:.3f}" if "input_host_ms_per_step" in r else "-",
        f"{r['host_cores_to_feed_step']:.2f}" if "host_cores_to_feed_step" in r else "-",
        f"{100 * r['input_wait_fraction']:.0f}%",
        f"{r['infer_ms_one_record_per_device']:.1f}" if "infer_ms_one_record_per_device" in r
        else "-",
        f"{r['peak_device_memory_mb']:,.0f}" if r.get("peak_device_memory_mb") else "-",
    ]
    return "| " + " | ".join(cells) + " |"


INPUT_COLUMNS = ("system", "input", "batch", "workers", "read threads", "host CPUs",
                 "samples/s", "samples/s per core", "host ms/batch", "command")


def input_row(r: dict) -> str:
    cells = [r["system"], r.get("train_read", "-"), str(r["batch_size"]),
             str(r["worker_count"]), str(r["read_threads"]), str(r["cpu_count"]),
             f"{r['input_samples_per_s']:,.0f}",
             f"{r['input_samples_per_core_s']:,.0f}" if "input_samples_per_core_s" in r else "-",
             f"{r['input_host_ms_per_step']:.3f}" if "input_host_ms_per_step" in r else "-",
             f"`{r['command'].split('run.py ', 1)[-1]}`"]
    return "| " + " | ".join(cells) + " |"


def table(lines: list[dict]) -> str:
    """The train-step table, then (if any) the input-only table. Lines of other benchmarks
    (e.g. violence_encoder's, which name a "benchmark" instead of a "system") are left to
    their own RESULTS.md sections."""
    lines = [r for r in lines if "system" in r]
    out = []
    for cols, fmt, rows in ((COLUMNS, row, [r for r in lines if not r.get("input_only")]),
                            (INPUT_COLUMNS, input_row, [r for r in lines if r.get("input_only")])):
        if rows:
            out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                    *(fmt(r) for r in rows), ""]
    return "\n".join(out).rstrip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", nargs="?",
                   default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "results.jsonl"))
    p.add_argument("--device", default="", help="only lines whose device contains this")
    args = p.parse_args()
    with open(args.path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    print(table([r for r in lines if args.device.lower() in r.get("device", "cpu").lower()]))


if __name__ == "__main__":
    main()
