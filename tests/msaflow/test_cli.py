"""dvc.yaml and config/paths.py spell the same artifact layout; the CLI parses."""

from __future__ import annotations

from pathlib import Path

import yaml

from config.paths import Paths
from msaflow.cli import build_parser, main
from tasks.params import load_params

ROOT = Path(__file__).resolve().parents[2]


def _outs(stage: dict) -> set[str]:
    found = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return found


def test_dvc_outputs_match_paths() -> None:
    params = load_params(ROOT / "params.yaml")
    paths = Paths.from_params(params)
    text = (ROOT / "dvc.yaml").read_text().replace("${dataset.name}", params.dataset.name)
    stages = yaml.safe_load(text)["stages"]
    assert _outs(stages["demo"]) == {str(paths.demo_root)}
    assert _outs(stages["ingest"]) == {str(paths.manifest), str(paths.ingest_errors)}
    # extract_cache/ is the stage's working cache, not an output: an experiment's temporary
    # copy lacks it and must not re-run extraction for that
    assert _outs(stages["extract"]) == {str(paths.csd_dir), str(paths.extract_errors)}
    assert _outs(stages["cache"]) == {str(paths.processed)}
    model = "late_fusion"
    train = {o.replace("${item}", model) for o in _outs(stages["train"]["do"])}
    assert str(paths.checkpoints(model)) in train
    assert str(paths.report(model) / "train") in train
    evaluate = {o.replace("${item}", model) for o in _outs(stages["evaluate"]["do"])}
    assert evaluate == {str(paths.report(model) / "metrics.json"),
                        str(paths.report(model) / "predictions.csv")}
    robust = {o.replace("${item}", model) for o in _outs(stages["robustness"]["do"])}
    assert robust == {str(paths.robustness(model)), str(paths.clip_conditions(model))}
    assert _outs(stages["report"]) == {
        str(paths.summary), str(paths.robustness_figure), str(paths.html_report),
        str(paths.plots), str(paths.headlines)}
    assert _outs(stages["code"]) == {str(paths.code)}
    # the top-level plots: inside the report's folder of plots
    plots = {next(iter(e)) if isinstance(e, dict) else e
             for e in yaml.safe_load(text)["plots"]}
    assert plots == {str(paths.valid_curves), str(paths.pred_vs_true(model).parent),
                     *(str(paths.robustness_curve(k)) for k in ("missing", "noise"))}


def test_every_stage_has_a_cli_command() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    parser = build_parser()
    for name, stage in stages.items():
        cmd = (stage.get("do") or stage)["cmd"].replace("${item}", "late_fusion").split()
        assert cmd[0] == "msaflow", name
        parser.parse_args(cmd[1:])


def test_cli_check_reports_bad_params(tmp_path: Path, capsys) -> None:
    assert main(["--params", str(ROOT / "params.yaml"), "check"]) == 0
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("batch_size: 16", "batch_size: x"))
    assert main(["--params", str(bad), "check"]) == 2
    assert "train.batch_size" in capsys.readouterr().err


def test_exp_show_and_apply_explain_themselves(capfd) -> None:
    assert main(["exp", "show", "--help"]) == 0  # was a JSONDecodeError traceback
    out = capfd.readouterr().out
    assert out.startswith("usage: msaflow exp show") and "dvc experiments show" in out
    assert main(["exp", "apply"]) == 2
    assert "usage: msaflow exp apply NAME" in capfd.readouterr().err
    assert main(["exp", "apply", "--help"]) == 0
    assert "Bring experiment NAME's results into the workspace" in capfd.readouterr().out
