"""Every figure the README and the docs quote from the demo's reports equals the committed
report, to the digits shown: the tables whose first column is a model of the demo and whose
columns are metrics of `evaluate` (``reports/demo/<model>/metrics.json``) or of `robustness`
(``robustness.json``'s summary; effective robustness as the report computes it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tasks.params import load_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# a table's column header → (report, split or "summary", key)
COLUMNS = {
    "test MAE ↓": ("metrics", "test", "MAE"),
    "MAE ↓": ("metrics", "test", "MAE"),
    "Corr": ("metrics", "test", "Corr"),
    "Has0 Acc2": ("metrics", "test", "Has0_acc_2"),
    "Has0 F1": ("metrics", "test", "Has0_F1_score"),
    "Non0 Acc2": ("metrics", "test", "Non0_acc_2"),
    "Non0 F1": ("metrics", "test", "Non0_F1_score"),
    "Acc7": ("metrics", "test", "Mult_acc_7"),
    "valid MAE": ("metrics", "valid", "MAE"),
    "clean": ("robustness", "summary", "clean"),
    "text absent": ("robustness", "summary", "absent_text"),
    "audio absent": ("robustness", "summary", "absent_audio"),
    "vision absent": ("robustness", "summary", "absent_vision"),
    "all absent": ("robustness", "summary", "absent_all"),
    "relative (missing)": ("robustness", "summary", "relative_missing"),
    "relative (noise)": ("robustness", "summary", "relative_noise"),
    "effective (missing)": ("robustness", "summary", "effective_missing"),
    "effective (noise)": ("robustness", "summary", "effective_noise"),
}
NUMBER = re.compile(r"[−+-]?\d+(?:\.\d+)?")


def _reports() -> dict[str, dict[str, dict]]:
    """The committed demo reports: model → {"metrics": metrics.json, "robustness": summary
    with effective robustness against the reference}."""
    params = load_params(ROOT / "params.yaml")
    found = {}
    for model in params.train.models:
        metrics = json.loads((ROOT / f"reports/demo/{model}/metrics.json").read_text())
        summary = json.loads((ROOT / f"reports/demo/{model}/robustness.json").read_text())
        found[model] = {"metrics": metrics, "robustness": {"summary": summary["summary"]}}
    ref = found[params.robustness.reference]["robustness"]["summary"]
    for model in found.values():
        s = model["robustness"]["summary"]
        for kind in ("missing", "noise"):
            s[f"effective_{kind}"] = ((s[f"relative_{kind}"] - s["clean"])
                                      - (ref[f"relative_{kind}"] - ref["clean"]))
    return found


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Markdown tables: (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.match(r"^\|\s*:?-{3}", lines[i + 1]) and \
                (i == 0 or not lines[i - 1].startswith("|")):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            tables.append((header, rows))
    return tables


def _numbers(cell: str) -> list[tuple[float, int]]:
    """Each number of a cell with its count of decimals (``0.567 ± 0.025`` gives two)."""
    return [(float(m.replace("−", "-")), len(m.partition(".")[2]))
            for m in NUMBER.findall(cell.replace("**", ""))]


def quoted() -> list[tuple[str, str, str, str, str]]:
    """Every (file, model, column, cell, what) a doc's demo tables quote from the reports."""
    reports = _reports()
    found = []
    for doc in DOCS:
        for header, rows in _tables(doc.read_text(encoding="utf-8")):
            if header[0] != "model" or not any(h in COLUMNS for h in header[1:]):
                continue
            for row in rows:
                if row[0] not in reports:
                    continue
                for column, cell in zip(header[1:], row[1:], strict=False):
                    if column in COLUMNS:
                        found.append((doc.name, row[0], column, cell, "table"))
    return found


def test_the_docs_quote_the_demo_reports() -> None:
    reports = _reports()
    cells = quoted()
    files = {f for f, *_ in cells}
    assert {"README.md", "robustness.md"} <= files, files  # the two demo tables
    wrong = []
    for file, model, column, cell, _ in cells:
        report, split, key = COLUMNS[column]
        source = reports[model][report][split]
        expected = [source[key]]
        if f"{key}_std" in source:
            expected.append(source[f"{key}_std"])
        numbers = _numbers(cell)
        assert numbers, (file, model, column, cell)
        for (value, decimals), want in zip(numbers, expected, strict=False):
            if abs(value - want) > 0.5 * 10 ** -decimals + 1e-9:
                wrong.append(f"{file}: {model} / {column}: {cell} (report: {want:.6f})")
    assert wrong == []


@pytest.mark.parametrize("cell,numbers", [("**0.567 ± 0.025**", [(0.567, 3), (0.025, 3)]),
                                          ("−0.0214", [(-0.0214, 4)]), ("0", [(0.0, 0)]),
                                          ("+0.005", [(0.005, 3)])])
def test_cells_are_read_with_their_digits(cell: str, numbers: list) -> None:
    assert _numbers(cell) == numbers
