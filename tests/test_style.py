"""The package stays typed: records and results are read through attributes, not string keys."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landcoverpy"

# string-key subscripts (x["key"]) per 1,000 lines: a rough proxy for untyped records. DataFrame
# columns, STAC JSON at the edge and arrays by layer name keep some; records must not come back.
MAX_PER_1000_LINES = 20.0


def string_key_subscripts(source: str) -> int:
    return sum(
        isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
        for node in ast.walk(ast.parse(source))
    )


def test_string_key_subscripts_stay_rare() -> None:
    sources = [p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))]
    count = sum(string_key_subscripts(s) for s in sources)
    lines = sum(len(s.splitlines()) for s in sources)
    assert 1000 * count / lines <= MAX_PER_1000_LINES, f"{count} string-key subscripts in {lines} lines"


def test_the_counter_counts_subscripts_not_lists() -> None:
    assert string_key_subscripts('x["a"]; y = ["a"]; z[0]; w[k]; v["b"]["c"]') == 3
