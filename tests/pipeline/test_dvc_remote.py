"""DVC as teams use it: the default remote lives outside the clone, so a second clone pulls what the
first pushed; the evaluate stage's plot data are cached and its metrics summary is kept in git, so
`dvc metrics diff` and `dvc plots diff` compare commits, and `dvc metrics diff` runs cleanly in a
fresh clone (offline, temp folders)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@example.com", "DVC_NO_ANALYTICS": "1",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
DVC = [sys.executable, "-m", "dvc"]


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r.stdout


def init_repo(path: Path) -> Path:
    """A git + DVC repository with the project's own .dvc/config (its default remote)."""
    path.mkdir(parents=True)
    run(["git", "init", "-q"], path)
    run(DVC + ["init", "-q"], path)
    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")
    return path


def test_second_clone_pulls_what_the_first_pushed(tmp_path):
    first = init_repo(tmp_path / "first")
    (first / "data").mkdir()
    (first / "data" / "train.csv").write_text("prompt_id,score\na,0.5\nb,1.0\n")
    run(DVC + ["add", "-q", "data"], first)
    run(["git", "add", "-A"], first)
    run(["git", "commit", "-qm", "data"], first)
    run(DVC + ["push", "-q"], first)
    remote = tmp_path / "causal-router-dvc-remote"
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*")), "the remote is a sibling of the clone"
    assert not any(first.glob("*dvc-remote*")), "nothing of the remote inside the clone"

    run(["git", "clone", "-q", str(first), str(tmp_path / "second")], tmp_path)
    second = tmp_path / "second"
    assert not (second / "data" / "train.csv").exists()
    run(DVC + ["pull", "-q"], second)
    assert (second / "data" / "train.csv").read_text() == (first / "data" / "train.csv").read_text()


WRITE = """
import json, sys, yaml
from pathlib import Path
seed = yaml.safe_load(open("params.yaml"))["evaluate"]["shift"]
Path("artifacts/plots").mkdir(parents=True, exist_ok=True)
records = [{"method": m, "lambda": lam, "utility": u + seed - lam / 1000}
           for m, u in (("rm-interval", 0.7), ("naive", 0.6)) for lam in (0, 100)]
json.dump(records, open("artifacts/metrics.json", "w"))
json.dump({"rm-interval": {"mean_utility": 0.65 + seed}}, open("artifacts/summary.json", "w"))
methods = json.load(open("methods.json"))
rows = [",".join(["lambda", *methods])] + [",".join([str(lam), *(str(0.7 - 0.01 * k + seed - lam / 1000)
                                                      for k in range(len(methods)))]) for lam in (0, 100)]
Path("artifacts/plots/utility.csv").write_text("\\n".join(rows) + "\\n")
Path("artifacts/plots/utility.png").write_bytes(b"png")
Path("artifacts/plots/frontier.png").write_bytes(b"png")
"""


@pytest.mark.timeout(300)
def test_metrics_and_plots_diff_across_commits(tmp_path):
    """The project's evaluate-stage declarations (outs, metrics, plots, the top-level plot) on a stand-in
    command: the previous commit's metrics and plot data are found, so both diffs compare two revisions."""
    repo = init_repo(tmp_path / "repo")
    project = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = {k: v for k, v in project["stages"]["evaluate"].items() if k in ("outs", "metrics", "plots")}
    stage.update(cmd=f"{sys.executable} write.py", params=["evaluate"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}, "plots": project["plots"]}))
    (repo / "write.py").write_text(WRITE)
    (methods,) = project["plots"][0]["utility-vs-lambda"]["y"].values()
    (repo / "methods.json").write_text(json.dumps(methods))
    (repo / "params.yaml").write_text("evaluate:\n  shift: 0.0\n")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")  # the project's: the metrics summary is kept
    run(DVC + ["repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first"], repo)
    (repo / "params.yaml").write_text("evaluate:\n  shift: 0.1\n")
    run(DVC + ["repro", "-q"], repo)

    diff = json.loads(run(DVC + ["metrics", "diff", "HEAD", "--json"], repo))
    change = diff["artifacts/summary.json"]["rm-interval.mean_utility"]
    assert change["old"] == pytest.approx(0.65) and change["new"] == pytest.approx(0.75)

    plots = json.loads(run(DVC + ["plots", "diff", "HEAD", "--json", "--targets", "utility-vs-lambda"], repo))
    (vega,) = plots["data"]["utility-vs-lambda"]
    assert set(vega["revisions"]) == {"HEAD", "workspace"}
    values = vega["content"]["data"]["values"]
    assert {v["field"] for v in values} == set(methods) >= {"rm-interval", "naive"}, "one line per method"
    assert {v["rev"] for v in values} == {"HEAD", "workspace"}
    assert vega["content"]["encoding"]["x"]["field"] == "lambda"


@pytest.mark.timeout(300)
def test_metrics_diff_runs_cleanly_in_a_fresh_clone(tmp_path):
    """A fresh clone has no DVC cache and nothing pulled: with the summary cached, `dvc metrics diff`
    said "DVC failed to load some metrics for following revisions: 'HEAD, workspace'". The summary
    is in git, so HEAD's is in every clone: nothing changed, nothing printed, exit 0."""
    repo = init_repo(tmp_path / "repo")
    project = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stage = {k: v for k, v in project["stages"]["evaluate"].items() if k in ("outs", "metrics", "plots")}
    stage.update(cmd=f"{sys.executable} write.py", params=["evaluate"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    (repo / "write.py").write_text(WRITE)
    (repo / "methods.json").write_text(json.dumps(["rm-interval", "naive"]))
    (repo / "params.yaml").write_text("evaluate:\n  shift: 0.0\n")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    run(DVC + ["repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first"], repo)
    assert "artifacts/summary.json" in run(["git", "ls-files"], repo).split()

    clone = tmp_path / "fresh"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    r = subprocess.run(DVC + ["metrics", "diff"], cwd=clone, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "failed" not in r.stdout + r.stderr and not r.stdout.strip(), r.stdout + r.stderr
    shown = json.loads(run(DVC + ["metrics", "show", "--json"], clone))
    ((_, workspace),) = shown.items()
    assert workspace["data"]["artifacts/summary.json"]["data"] == {"rm-interval": {"mean_utility": 0.65}}
