"""The project's experiments (``dvc exp run``'s commits under ``refs/exps``): listed, compared,
and brought into the workspace.

- ``msaflow exp show``: every experiment of the project, whatever commit it was run from
  (plain ``dvc exp show`` lists only the current commit's), with the params each changed
  against its own baseline and each model's headline test metric (``headline.json``);
- ``msaflow exp apply NAME``: the experiment's results into the workspace. The workspace's
  own results are committed first when no commit holds them (so nothing is lost: the way
  back is ``git checkout -- params.yaml dvc.lock reports && dvc checkout``); the params the
  experiment changed are set in params.yaml in place, its comments and layout kept (DVC's own
  ``dvc exp apply`` rewrites the whole file); dvc.lock and reports come from the experiment's
  commit, and ``dvc checkout`` brings its data out of the cache;
- :func:`holding`: which experiments made an artifact the workspace lacks (what predict and
  export say when a dataset's model exists only in an experiment).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.overrides import flatten

RESULTS = ("params.yaml", "dvc.lock", "reports")  # what an experiment changes in git


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name, its commit and the commit it was run from."""

    name: str
    sha: str
    baseline: str


def git(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """``git ARGS`` in the working directory, its output captured (``check``: a failure
    raises, naming the command and git's message)."""
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def experiments() -> list[Experiment]:
    """Every experiment of the repository, newest first (``refs/exps/<baseline>/<name>``)."""
    if shutil.which("git") is None:
        return []
    out = git("for-each-ref", "--sort=-committerdate", "--format=%(refname) %(objectname)",
               "refs/exps/").stdout
    found = []
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        parts = ref.split("/")
        # refs/exps/ab/<38 hex>/<name>; DVC's own refs (exec/, celery/, stash) are not runs
        if len(parts) >= 5 and len(parts[2]) == 2 and len(parts[3]) == 38:
            found.append(Experiment("/".join(parts[4:]), sha, parts[2] + parts[3]))
    return found


def find(name: str) -> Experiment | None:
    """The experiment called ``name`` (or whose commit starts with it); the newest of that
    name when several are."""
    for exp in experiments():
        if exp.name == name or (len(name) >= 7 and exp.sha.startswith(name)):
            return exp
    return None


def _outs(lock_text: str) -> set[str]:
    try:
        lock = yaml.safe_load(lock_text) or {}
    except yaml.YAMLError:
        return set()
    return {out["path"] for stage in (lock.get("stages") or {}).values()
            for out in stage.get("outs") or [] if isinstance(out, dict) and "path" in out}


def holding(path: str | Path) -> list[str]:
    """The experiments whose dvc.lock records an output at ``path`` (or holding it), newest
    first."""
    want = Path(path).as_posix().removeprefix("./")
    names = []
    for exp in experiments():
        outs = _outs(git("show", f"{exp.sha}:dvc.lock").stdout)
        if any(want == o or want.startswith(o.rstrip("/") + "/") for o in outs) \
                and exp.name not in names:
            names.append(exp.name)
    return names


def hint(path: str | Path) -> str:
    """What to tell a user who needs ``path``: the experiment that has it and the command that
    brings it in; "" when no experiment has it."""
    names = holding(path)
    if not names:
        return ""
    others = f" (also: {', '.join(names[1:])})" if len(names) > 1 else ""
    return (f"experiment {names[0]!r} made it{others}: bring it into the workspace with "
            f"`msaflow exp apply {names[0]}`")


# ---------------------------------------------------------------- msaflow exp show


def _headline(test: dict) -> tuple[str, float] | None:
    """The test metric a row shows for a model: the first headline metric it reports (MAE
    for regression, F1_weighted for classification)."""
    from tasks.metrics import HEADLINE

    for name in dict.fromkeys(metrics[0] for metrics in HEADLINE.values()):
        if isinstance(test.get(name), int | float):
            return name, float(test[name])
    return None


def exp_rows(shown: list[dict]) -> list[dict]:
    """`dvc exp show --json` as rows: name, params (flat), the baseline's params, {model:
    (metric, value)} from each model's headline file (``reports/headline_<ds>/<model>.json``)."""
    rows = []

    def add(name: str, data: dict | None, error: Any, base: dict | None) -> dict:
        data = data or {}
        params = flatten(data.get("params", {}).get("params.yaml", {}).get("data", {}))
        scores: dict[str, tuple[str, float] | None] = {}
        for path, entry in (data.get("metrics") or {}).items():
            parts = path.split("/")  # reports/headline_<ds>/<model>.json
            if len(parts) == 3 and parts[0] == "reports" and parts[1].startswith("headline_") \
                    and parts[2].endswith(".json"):
                test = ((entry or {}).get("data") or {}).get("test") or {}
                scores[parts[2].removesuffix(".json")] = _headline(test)
        row = {"name": name, "params": params, "base": params if base is None else base,
               "scores": scores, "error": bool(error), "baseline": base is None}
        rows.append(row)
        return row

    for commit in shown:
        rev = commit.get("rev") or ""
        label = commit.get("name") or (rev if rev == "workspace" else rev[:7])
        row = add(label, commit.get("data"), commit.get("error"), None)
        for exp in commit.get("experiments") or []:
            for run in exp.get("revs") or []:
                add(run.get("name") or run["rev"][:7], run.get("data"), run.get("error"),
                    row["params"])
    return rows


def exp_table(rows: list[dict]) -> str:
    """A markdown table comparing experiments: the params each changed against its baseline
    (the commit it was run from; a commit's row: against the first row, the workspace) and
    each model's headline test metric."""
    if not rows:
        return "no experiments"
    first = rows[1] if len(rows) > 1 and rows[0]["name"] == "workspace" else rows[0]
    models: list[str] = []
    for row in rows:
        models += [m for m in row["scores"] if m not in models]
    head = ["experiment", "changed params", *models]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(
        ["---", "---", *["---:"] * len(models)]) + " |"]
    for row in rows:
        base = first["params"] if row["baseline"] else row["base"]
        changed = [f"{k}={row['params'][k]}" for k in row["params"]
                   if row["params"][k] != base.get(k)]
        cells = []
        for model in models:
            score = row["scores"].get(model)
            if score is None:
                cells.append("—")
            else:
                metric, value = score
                cells.append(f"{value:.3f}" if metric == "MAE" else f"{metric} {value:.3f}")
        label = row["name"] + (" (error)" if row["error"] else "")
        if not row["baseline"]:
            label = "└ " + label
        lines.append("| " + " | ".join([label, ", ".join(changed) or "", *cells]) + " |")
    return "\n".join(lines)


SELECTING = ("-A", "--all-commits", "--rev", "-n", "--num", "-a", "--all-branches", "-T",
             "--all-tags")


def show_args(dvc_args: list[str]) -> list[str]:
    """`dvc exp show` arguments that list every experiment: the current commit's and those of
    each commit an experiment was run from (unless the arguments choose commits)."""
    if any(a.split("=")[0] in SELECTING for a in dvc_args):
        return list(dvc_args)
    head = git("rev-parse", "HEAD").stdout.strip()
    earlier = [b for b in dict.fromkeys(e.baseline for e in experiments()) if b != head]
    if not earlier:
        return list(dvc_args)  # DVC's default: HEAD's
    return [*dvc_args, *(a for rev in ("HEAD", *earlier) for a in ("--rev", rev))]


def exp_show(dvc_args: list[str]) -> int:
    """`msaflow exp show`: every experiment's changed params and test metric per model."""
    dvc = shutil.which("dvc")
    if dvc is None:
        print("msaflow: `dvc` not found on PATH (activate the venv: . .venv/bin/activate)")
        return 2
    if any(a in ("-h", "--help") for a in dvc_args):
        print("usage: msaflow exp show [DVC_ARGS]\n\nEvery experiment of the project (those of "
              "earlier commits too): the params each changed against the commit it was run "
              "from, and each model's headline test metric. DVC_ARGS choose other commits "
              "(they go to `dvc exp show --json`):\n")
        return subprocess.run([dvc, "exp", "show", "--help"], check=False).returncode
    proc = subprocess.run([dvc, "exp", "show", "--json", *show_args(dvc_args)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stderr.strip() or proc.stdout.strip())
        return proc.returncode
    try:
        shown = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:  # dvc printed something else (a message): show it
        print(proc.stdout.strip())
        return 0
    print(exp_table(exp_rows(shown)))
    print("test metric per model: MAE (lower is better), F1_weighted or Acc for "
          "classification; — : no metrics there; └ : an experiment of the commit above. "
          "Every figure: dvc exp show --md (add --rev <commit> for an earlier commit's)")
    return 0


# ---------------------------------------------------------------- msaflow exp apply


def _leaves(text: str) -> dict[str, Any]:
    return flatten(yaml.safe_load(text) or {})


def set_in_place(text: str, changes: dict[str, Any], removed: list[str]) -> str:
    """params.yaml's text with the dotted ``changes`` set and ``removed`` deleted, every other
    line, comment and layout as it was (ruamel.yaml's round trip)."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    data = rt.load(text)
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = CommentedMap()
            node = node[part]
        if isinstance(value, list):
            seq = CommentedSeq(value)
            old = node.get(leaf)
            if not isinstance(old, CommentedSeq) or old.fa.flow_style():
                seq.fa.set_flow_style()
            value = seq
        node[leaf] = value
    for key in removed:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


class ApplyError(RuntimeError):
    """The experiment cannot be brought in (unknown name, git refuses)."""


def apply(name: str, params_file: str = "params.yaml") -> int:
    """`msaflow exp apply NAME` (see the module docstring)."""
    exp = find(name)
    if exp is None:
        known = list(dict.fromkeys(e.name for e in experiments()))
        print(f"msaflow exp apply: no experiment {name!r} (experiments: "
              f"{', '.join(known) or 'none yet; run one with msaflow exp -n NAME -S ...'})")
        return 2
    if git("status", "--porcelain", "--", *RESULTS).stdout.strip():
        present = [p for p in RESULTS if os.path.exists(p)]
        git("add", "--", *present, check=True)
        git("commit", "-q", "-m", f"results before msaflow exp apply {exp.name}", "--",
             *present, check=True)
        sha = git("rev-parse", "--short", "HEAD").stdout.strip()
        print(f"msaflow exp apply: the workspace's results had no commit; committed them "
              f"first ({sha}), so the way back below returns to them")
    changed = git("diff", "--name-status", "--no-renames", exp.baseline, exp.sha, check=True)
    params_changes: dict[str, Any] = {}
    removed: list[str] = []
    brought, deleted = [], []
    for line in changed.stdout.splitlines():
        status, _, path = line.partition("\t")
        if path == params_file:
            before = _leaves(git("show", f"{exp.baseline}:{path}").stdout)
            after = _leaves(git("show", f"{exp.sha}:{path}").stdout)
            params_changes = {k: v for k, v in after.items() if before.get(k) != v}
            removed = [k for k in before if k not in after]
        elif status == "D":
            deleted.append(path)
        else:
            brought.append(path)
    if brought:
        git("checkout", exp.sha, "--", *brought, check=True)
        # the working tree only: git's index keeps the last commit, so the way back
        # (`git checkout -- params.yaml dvc.lock reports`) returns to it
        git("reset", "-q", "HEAD", "--", *brought, check=True)
    for path in deleted:
        if os.path.exists(path):
            os.remove(path)
    if params_changes or removed:
        text = Path(params_file).read_text(encoding="utf-8")
        tmp = Path(params_file + ".tmp")
        tmp.write_text(set_in_place(text, params_changes, removed), encoding="utf-8")
        tmp.replace(params_file)
    dvc = shutil.which("dvc")
    code = subprocess.run([dvc or "dvc", "checkout", "--quiet"], check=False).returncode
    sets = ", ".join(f"{k}={v}" for k, v in params_changes.items()) or "none"
    print(f"applied experiment {exp.name!r} ({exp.sha[:7]}): params.yaml: {sets}"
          f"{' (removed ' + ', '.join(removed) + ')' if removed else ''}; dvc.lock, reports "
          f"and {len(brought) + len(deleted)} file(s) from the experiment; its data checked "
          f"out of DVC's cache{'' if code == 0 else f' (dvc checkout exited {code})'}.\n"
          "Keep it: git add params.yaml dvc.lock reports && git commit -m \"...\"\n"
          "The way back: git checkout -- params.yaml dvc.lock reports && dvc checkout")
    return 0 if code == 0 else 1
