"""The table and JSON of ``bench/gpu_check.sh``: ``python bench/gpu_summary.py OUT``.

Reads ``OUT/steps.tsv`` (each part's name, seconds and exit status), ``OUT/matchers.json`` (bench/run.py: seconds
per iteration, peak GPU memory and the evaluation network's accuracy per matcher and objective) and the
``metrics.json`` of the train.py runs under ``OUT``; writes ``OUT/gpu_check.json`` and prints one Markdown table.
Exit status 1 if a part failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def parts(out: Path) -> list[dict]:
    rows = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, seconds, status = line.split("\t")
        rows.append({"part": name, "seconds": float(seconds), "status": int(status)})
    return rows


def measurements(out: Path) -> list[dict]:
    """One row per measured configuration: what, s/iteration, peak GPU memory (MB), accuracy (%; the train.py runs
    on the embedded data set; bench/run.py's steps run on random data, so they have none)."""
    rows = []
    matchers = out / "matchers.json"
    if matchers.is_file():
        for r in json.loads(matchers.read_text())["rows"]:
            rows.append({"what": f"{r['method']} IPC {r['ipc']} {r['objective']} step (bench/run.py)",
                         "s_per_iteration": r["iteration_s"], "peak_gpu_mb": r["peak_mb"], "accuracy": None})
    for metrics in sorted(out.glob("*/metrics.json")):
        m = json.loads(metrics.read_text())
        if "scored" not in m or "distilled" not in m["scored"]:
            continue
        rows.append({"what": f"train.py {metrics.parent.name} ({m.get('method')}, {m.get('iterations')} iterations)",
                     "s_per_iteration": m.get("seconds_per_iteration_median"),
                     "peak_gpu_mb": m.get("peak_gpu_memory_mb"), "accuracy": m["scored"]["distilled"].get("acc")})
    return rows


def cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def main(out: Path) -> int:
    summary = {"device": (out / "device.txt").read_text().strip() if (out / "device.txt").is_file() else None,
               "parts": parts(out), "measurements": measurements(out)}
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{summary['device']}\n\n| part | seconds | status |\n|---|---|---|")
    for p in summary["parts"]:
        status = "ok" if p["status"] == 0 else f"FAILED (exit {p['status']})"
        print(f"| {p['part']} | {p['seconds']:.0f} | {status} |")
    print("\n| measured | s / iteration | peak GPU memory (MB) | accuracy (%) |\n|---|---|---|---|")
    for m in summary["measurements"]:
        print(f"| {m['what']} | {cell(m['s_per_iteration'], '.3f')} | {cell(m['peak_gpu_mb'], '.0f')} | "
              f"{cell(m['accuracy'], '.2f')} |")
    print(f"\nwritten: {out / 'gpu_check.json'}")
    return 1 if any(p["status"] != 0 for p in summary["parts"]) else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
