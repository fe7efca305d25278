"""End to end: the real `dvc repro` on a tiny params set (tests/e2e.py), then what a user
does next: repro again, the same DAG as one Prefect flow run, a forced stage, sharing
through a DVC remote, and which params re-run which stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e import BIN, TINY, TinyDemo, clone, run


@pytest.mark.slow
def test_dvc_repro_end_to_end(tiny_demo: TinyDemo, tmp_path: Path) -> None:
    assert "Running stage 'train@late_fusion'" in tiny_demo.output
    repo, env = clone(tiny_demo, tmp_path / "repo")
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    models = TINY["train.models"]

    # Every stage's artifact is there and well formed.
    for model in models:
        metrics = json.loads((repo / f"reports/demo/{model}/metrics.json").read_text())
        assert set(metrics) >= {"valid", "test"}
        assert "MAE" in metrics["test"] and "Corr" in metrics["test"]
        assert (repo / f"reports/plots_demo/pred_vs_true/{model}.png").stat().st_size > 0
        assert (repo / f"data/checkpoints/demo/{model}/seed0.ckpt").is_file()
    summary = (repo / "reports/summary_demo.md").read_text()
    assert "late_fusion" in summary and "demo: robustness (Has0_acc_2" in summary
    assert (repo / "reports/robustness_demo.png").stat().st_size > 0
    # What DVC shows is legible: the headline file of each model as metrics, one row an
    # experiment; the plots declared once (valid curves per model, robustness with every
    # model on one axis, predicted against true per model).
    shown = json.loads(
        run([str(BIN / "dvc"), "plots", "show", "--json"], repo, env).stdout)["data"]
    assert sorted(shown) == sorted([
        *(f"reports/plots_demo/valid/{m}.csv" for m in models),
        *(f"reports/plots_demo/pred_vs_true/{m}.png" for m in models),
        "reports/plots_demo/robustness_missing.csv", "reports/plots_demo/robustness_noise.csv"])
    for kind, axis in (("missing", "rate"), ("noise", "level")):
        (plot,) = shown[f"reports/plots_demo/robustness_{kind}.csv"]
        values = plot["content"]["data"]["values"]
        assert {v["series"] for v in values} == set(models)  # one axis, every model
        for model in models:
            doc = json.loads((repo / f"reports/demo/{model}/robustness.json").read_text())
            mine = [v for v in values if v["series"] == model]
            assert [float(v[axis]) for v in mine] == [0.0, 0.5]
            assert [float(v["accuracy"]) for v in mine] == pytest.approx(
                [doc["conditions"][f"{kind}:{x:g}"]["test"]["Has0_acc_2"] for x in (0, 0.5)],
                abs=1e-5)
    (valid,) = shown["reports/plots_demo/valid/late_fusion.csv"]
    assert {v["series"] for v in valid["content"]["data"]["values"]} == {"seed 0"}
    exp = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)
    metrics_files = exp[0]["data"]["metrics"]
    assert sorted(metrics_files) == [f"reports/headline_demo/{m}.json" for m in sorted(models)]
    for model in models:
        head = metrics_files[f"reports/headline_demo/{model}.json"]["data"]
        evaluated = json.loads((repo / f"reports/demo/{model}/metrics.json").read_text())
        assert head["test"] == {k: evaluated["test"][k] for k in ("MAE", "Has0_acc_2")}
        assert head["valid"] == {"MAE": evaluated["valid"]["MAE"]}
        assert set(head["robustness"]) == {"relative_missing", "relative_noise"}
    table = run([str(BIN / "dvc"), "exp", "show", "--md"], repo, env).stdout.splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    # five headline numbers a model (the commit's six models, whose headline files the clone
    # holds, beside this run's two); the whole table (params and deps included) stays
    # readable: the full demo gives 147 columns
    headline = [c.split(":")[0] for c in header if c.startswith("reports/headline_demo/")]
    assert {f"reports/headline_demo/{m}.json" for m in models} <= set(headline), header
    assert all(headline.count(f) == 5 for f in set(headline)), header
    assert len(header) <= 150, (len(header), table[0])
    for variant in ("aligned", "unaligned"):
        assert (repo / f"data/processed/demo/{variant}.h5").is_file()
    csds = {p.name for p in (repo / "data/interim/demo/csd").iterdir()}
    assert {"words.csd", "librosa.csd", "facemesh.csd"} <= csds

    # A second repro does nothing.
    second = run([str(BIN / "dvc"), "repro"], repo, env)
    assert "Running stage" not in second.stdout, second.stdout

    # The same DAG as one Prefect flow run gives the same metrics and leaves DVC's ledger
    # in step (it ends with `dvc commit`): nothing left for `dvc repro` to do.
    before = (repo / "reports/demo/late_fusion/metrics.json").read_text()
    flow = run([str(BIN / "msaflow"), "run"], repo, env)
    assert "msaflow-pipeline" in flow.stdout + flow.stderr
    assert json.loads((repo / "reports/demo/late_fusion/metrics.json").read_text()) == (
        json.loads(before)
    )
    status = run([str(BIN / "dvc"), "status", "--json"], repo, env)
    assert json.loads(status.stdout or "{}") == {}, status.stdout

    # A forced re-run of a finished training stage keeps its up-to-date seeds and outputs.
    forced = run([str(BIN / "dvc"), "repro", "--force", "--single-item", "train@late_fusion"],
                 repo, env)
    assert "up to date" in forced.stdout + forced.stderr
    assert json.loads(run([str(BIN / "dvc"), "status", "--json"], repo, env).stdout) == {}

    # Sharing results (docs/scaling.md): push every cached output to a DVC remote (a local
    # folder here; s3://, ssh://... alike); a fresh clone pulls them and has nothing to redo.
    remote = tmp_path / "remote"
    run([str(BIN / "dvc"), "remote", "add", "-d", "shared", str(remote)], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "results and remote"], repo, env)
    pushed = run([str(BIN / "dvc"), "push"], repo, env)
    assert "pushed" in pushed.stdout + pushed.stderr and any(remote.rglob("*"))
    pulled = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(pulled)], tmp_path, env)
    pulled_env = dict(env, PYTHONPATH=str(pulled))
    run([str(BIN / "dvc"), "pull"], pulled, pulled_env)
    assert (pulled / "data/checkpoints/demo/late_fusion/seed0.ckpt").read_bytes() == (
        repo / "data/checkpoints/demo/late_fusion/seed0.ckpt").read_bytes()
    assert json.loads(run([str(BIN / "dvc"), "status", "--json"], pulled, pulled_env).stdout
                      or "{}") == {}
    again = run([str(BIN / "dvc"), "repro"], pulled, pulled_env)
    assert "Running stage" not in again.stdout, again.stdout

    # A training param re-runs only train/evaluate (+ the report that reads them).
    raw["train"]["max_epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status = run([str(BIN / "dvc"), "status", "--json"], repo, env)
    changed = set(json.loads(status.stdout or "{}"))
    assert changed == {f"train@{m}" for m in models}, changed

    # An extractor param re-runs extraction (and, through its outputs, everything after).
    raw["train"]["max_epochs"] = TINY["train.max_epochs"]
    raw["extract"]["vision"]["fps"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    status = run([str(BIN / "dvc"), "status", "--json"], repo, env)
    assert set(json.loads(status.stdout or "{}")) == {"extract"}
