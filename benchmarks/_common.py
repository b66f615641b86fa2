"""Helpers shared by the benchmarks: run a function in a fresh process and measure its wall
time and peak RSS (from the kernel's rusage of that one child)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure(module: str, func: str, args: dict[str, Any]) -> dict[str, float]:
    """Run ``module.func(**args)`` in a child Python; return seconds, peak RSS (MiB) and its result."""
    code = (
        f"import json, sys, importlib; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
        f"m = importlib.import_module({module!r}); r = getattr(m, {func!r})(**json.loads(sys.argv[1]));"
        "print('RESULT ' + json.dumps(r))"
    )
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    if status != 0:
        raise RuntimeError(f"{module}.{func} failed with status {status}")
    result = next((json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")), None)
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "result": result}


def report(title: str, rows: dict[str, dict[str, float]], baseline: str) -> None:
    base = rows[baseline]
    print(f"\n{title}")
    print(f"{'variant':<28}{'seconds':>10}{'peak RSS MiB':>15}{'speed-up':>10}{'memory ratio':>14}")
    for name, r in rows.items():
        print(
            f"{name:<28}{r['seconds']:>10.1f}{r['peak_rss_mib']:>15.0f}"
            f"{base['seconds'] / r['seconds']:>10.2f}{base['peak_rss_mib'] / r['peak_rss_mib']:>14.2f}"
        )
