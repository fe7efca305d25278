"""The HTML results report: one self-contained page (``reports/report_<ds>.html``).

Pictures are inline PNG data, the style is inline, there is no script: the page opens in
any browser with no network and nothing to load. Every piece of text from the data (clip
ids, transcripts, model names) is escaped.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any

from tasks.report.analysis import MODALITIES, ModelErrors

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1d1d1f; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }
th { background: #f4f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
span.text { display: inline-block; min-width: 14em; max-width: 360px; }
.scroll { overflow-x: auto; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 6px 12px;
           margin: 8px 0; }
.muted { color: #666; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #eee; }
figure { display: inline-block; margin: 8px; vertical-align: top; }
figcaption { font-size: 0.85em; color: #444; text-align: center; }
nav a { margin-right: 14px; }
"""


@dataclass
class Page:
    """What the page shows (tasks.report gathers it)."""

    dataset: str
    task: str
    models: list[str]
    splits: dict[str, int]  # split → clips
    notes: list[str]
    metric_header: list[str]  # the summary's column headers
    metric_rows: list[tuple[str, Any, list[str]]]  # (model, seeds, cells)
    robustness: dict[str, dict[str, Any]]  # model → robustness summary (+ effective_*)
    robustness_note: str
    errors: list[ModelErrors]
    classes: list[str] = field(default_factory=list)
    # pictures, PNG bytes: "robustness", "valid", "labels", and "pred_vs_true:<model>"
    pictures: dict[str, bytes | None] = field(default_factory=dict)
    valid_metric: str = ""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(data: bytes | None, alt: str) -> str:
    if not data:
        return f'<p class="muted">({_e(alt)}: not drawn)</p>'
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="{"num" if i >= numeric_from else ""}">{c}</td>'
            for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    # wide tables (every model's prediction) scroll inside the page instead of widening it
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "–"


def _robustness(page: Page) -> str:
    if not page.robustness:
        return '<p class="muted">No model has robustness figures yet.</p>'
    first = next(iter(page.robustness.values()))
    header = ["model", "clean", "text absent", "audio absent", "vision absent", "all absent",
              "relative (missing)", "relative (noise)", "effective (missing)",
              "effective (noise)"]
    keys = ["clean", "absent_text", "absent_audio", "absent_vision", "absent_all",
            "relative_missing", "relative_noise", "effective_missing", "effective_noise"]
    rows = [[_e(m), *(_fmt(s.get(k)) for k in keys)] for m, s in page.robustness.items()]
    return (f"<p>{_e(first['metric'])} on the {_e(first['split'])} split, mean over seeds and "
            f"draws.</p>" + _table(header, rows) + f'<p class="muted">{_e(page.robustness_note)}'
            "</p>" + _img(page.pictures.get("robustness"), "robustness curves of every model"))


def _errors(page: Page) -> str:
    if not page.errors:
        return '<p class="muted">No predictions yet.</p>'
    parts = []
    unit = ("1 − probability of the true class" if page.classes else "|prediction − label|")
    moved = ("predicted class (probability of the true class), and that probability's change"
             if page.classes else "prediction, and its change from the clean prediction")
    parts.append(f"<p>Per model, the {len(page.errors[0].cases)} test clips with the largest "
                 f"error ({_e(unit)}), mean over seeds. <em>Without</em> a modality: this "
                 f"model's {_e(moved)} when that modality is absent (the robustness stage's "
                 "conditions); the other models' predictions on the same clip beside.</p>")
    for item in page.errors:
        others = [m for m in page.models if m != item.model and
                  any(m in c.others for c in item.cases)]
        header = ["clip", "transcript", "true", item.model, "error",
                  *(f"without {m}" for m in MODALITIES), *others]
        rows = []
        for c in item.cases:
            absent = []
            for m in MODALITIES:
                if m in c.absent:
                    value, move = c.absent[m]
                    absent.append(f"{_e(value)} <span class='muted'>({move:+.2f})</span>")
                else:
                    absent.append("–")
            rows.append([_e(c.clip_id), f'<span class="text">{_e(c.transcript)}</span>',
                         _e(c.truth), _e(c.prediction), f"{c.error:.2f}", *absent,
                         *(_e(c.others.get(m, "–")) for m in others)])
        block = [f'<section class="model" id="errors-{_e(item.model)}">',
                 f"<h3>{_e(item.model)}</h3>", _table(header, rows, numeric_from=2)]
        if item.confusion is not None:
            conf_rows = [[_e(page.classes[t]), *(str(n) for n in row)]
                         for t, row in enumerate(item.confusion)]
            block += ["<p>Confusion matrix on test (rows: true class; columns: predicted; "
                      "mean over seeds' probabilities):</p>",
                      _table(["true \\ predicted", *page.classes], conf_rows)]
        block.append("</section>")
        parts.append("".join(block))
    return "".join(parts)


def render(page: Page) -> str:
    """The page's HTML."""
    splits = ", ".join(f"{n} {s}" for s, n in page.splits.items())
    notes = "".join(f'<div class="warning">{_e(n)}</div>' for n in page.notes)
    metrics = (_table(["model", "seeds", *page.metric_header],
                      [[_e(m), _e(seeds), *(_e(c) for c in cells)]
                       for m, seeds, cells in page.metric_rows])
               if page.metric_rows else '<p class="muted">No model evaluated yet.</p>')
    pictures = "".join(
        f'<figure id="pred-vs-true-{_e(m)}">'
        f'{_img(page.pictures.get(f"pred_vs_true:{m}"), f"{m}: predicted against true")}'
        f"<figcaption>{_e(m)}</figcaption></figure>" for m in page.models)
    kind = "confusion matrices" if page.classes else "predicted against true"
    sections = [
        ("metrics", "Test metrics", notes + metrics),
        ("robustness", "Robustness", _robustness(page)),
        ("curves", "Validation curves",
         f"<p>valid {_e(page.valid_metric)} during training, each seed a line.</p>"
         + _img(page.pictures.get("valid"), "validation curves")),
        ("pred-vs-true", f"Test: {kind}", pictures),
        ("labels", "Labels per split", _img(page.pictures.get("labels"), "label distribution")),
        ("errors", "Error analysis", _errors(page)),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(page.dataset)}: results</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(page.dataset)}: results</h1>"
        f'<p class="muted">task {_e(page.task)} · models {_e(", ".join(page.models))} · '
        f"clips {_e(splits)} · written by the report stage (msaflow report)</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
