"""Claims as data: a study file's `claims:` validated at the edge (one line naming the file and key, exit 2), the
report's generated "Paper claims" table from a real smoke study, and `bench claims` over several published
folders, where a run two studies share counts once."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _reliability import TINY_BASE

from bench.cli import main
from bench.report.published import published_claims

CLAIMS = [
    {"id": "dropout-l1", "statement": "Table 9: dropout 0.1 gives a lower L1", "paper": "L1 0.10 vs 0.12",
     "compare": {"model.dropout": 0.1}, "measure": "l1"},
    {"id": "dropout-hours", "statement": "dropout costs no time", "paper": "-",
     "compare": {"model.dropout": 0.1}, "measure": "hours"},
]


def _study(path: Path, name: str, **keys) -> Path:
    spec = {"name": name, "quality_metric": "l1",
            "base": {**TINY_BASE, "eval": {**TINY_BASE["eval"], "metrics": ["l1", "psnr"]}},
            "sweep": {"grid": {"model.dropout": [0.0, 0.1]}}, "seeds": [0, 1],
            "baseline": {"model.dropout": 0.0}, "claims": CLAIMS, **keys}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("claims")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PALETTE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["run", str(_study(root / "a.yaml", "claims_a")), "--scale", "smoke",
                     "--results", str(root / "results")]) == 0
    return root


def test_the_report_has_a_generated_claims_table(results):
    text = (results / "results" / "claims_a" / "report.md").read_text()
    section = text.split("## Paper claims", 1)[1].split("\n## ", 1)[0]
    assert "**dropout-l1**: Table 9: dropout 0.1 gives a lower L1" in section and "L1 0.10 vs 0.12" in section
    raw = pd.read_csv(results / "results" / "claims_a" / "report" / "report_claims.csv")
    trials = pd.read_csv(results / "results" / "claims_a" / "trials.csv").set_index(["label", "seed"])
    row = raw.set_index("id").loc["dropout-l1"]
    diff = [trials.loc[("dropout=0.1", s), "l1"] - trials.loc[("dropout=0.0", s), "l1"] for s in (0, 1)]
    assert row["n"] == 2 and row["diff"] == pytest.approx(sum(diff) / 2)  # the paired difference over seeds
    assert row["lo"] <= row["diff"] <= row["hi"]
    assert raw.set_index("id").loc["dropout-hours", "clock"] == "CPU"  # CPU hours recorded on the CPU
    assert {"cpu_hours", "wall_per_cpu", "contended", "load_start", "workers_end", "l1_se",
            "to_baseline_images", "run"} <= set(trials.columns)


def test_bench_claims_counts_a_run_two_studies_share_once(results, tmp_path):
    published = tmp_path / "published"
    for name in ("claims_a", "claims_b"):  # claims_b: the same runs published under another study's name
        (published / name).mkdir(parents=True)
        for f in ("trials.csv", "trivial.csv", "study.json"):
            shutil.copy(results / "results" / "claims_a" / f, published / name / f)
        records = pd.read_csv(results / "results" / "claims_a" / "records.csv")
        records.to_csv(published / name / "records.csv.gz", index=False)  # as results/reference publishes it
    meta = json.loads((published / "claims_b" / "study.json").read_text())
    (published / "claims_b" / "study.json").write_text(json.dumps({**meta, "name": "claims_b"}))
    files = [_study(tmp_path / "a.yaml", "claims_a"), _study(tmp_path / "b.yaml", "claims_b")]
    raw, _ = published_claims(files, published)
    row = raw.set_index("id").loc["dropout-l1"]
    assert row["n"] == 2 and row["shared_runs_counted_once"] == 2 and row["studies"] == "claims_a, claims_b"
    out = tmp_path / "claims.md"
    assert main(["claims", *map(str, files), "--results", str(published), "--out", str(out)]) == 0
    assert "| **dropout-l1**" in out.read_text() and "2 shared runs counted once" in out.read_text()
    brief = tmp_path / "brief.md"  # the README's short form: the paper's claims only, with a link to the full page
    assert main(["claims", *map(str, files), "--results", str(published), "--brief", str(brief)]) == 0
    text = brief.read_text()
    assert "Table 9: dropout 0.1 gives a lower L1" in text and "dropout costs no time" not in text
    assert f"[{brief.with_name('claims.md').as_posix()}]" in text and "| Verdict |" in text


@pytest.mark.parametrize("claim, key", [
    ({"compare": {"model.dropout": 0.5}}, "claims[0].compare"),  # matches no point
    ({"compare": {"train.lr": 0.1}}, "claims[0].compare.train.lr"),  # not a swept axis
    ({"measure": "beauty"}, "claims.0.measure"),
    ({"against": {}, "compare": {"model.dropout": 0.1}, "stage": "nowhere"}, "claims[0].stage"),
])
def test_a_bad_claim_is_one_line_naming_the_file_and_key(tmp_path, capsys, claim, key):
    path = _study(tmp_path / "bad.yaml", "bad", claims=[{**CLAIMS[0], **claim}])
    assert main(["run", str(path), "--scale", "smoke", "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and key in err, err
    assert not (tmp_path / "r").exists()


def test_a_folder_without_recorded_runs_never_shares_one_with_a_recorded_folder(results, tmp_path):
    """study.json records what each trial trained and the preset it trained under; a folder from before that
    record (trained under whatever the preset then was) is never taken for the same runs as a recorded one, even
    where today's expansion agrees, and its claims are not pooled with the recorded folder's."""
    meta = json.loads((results / "results" / "claims_a" / "study.json").read_text())
    trials = pd.read_csv(results / "results" / "claims_a" / "trials.csv")
    assert set(meta["runs"]) >= set(trials["trial"]) and len(set(meta["runs"].values())) == len(trials)
    assert meta["preset"]["scale"] == "smoke" and meta["preset"]["keys"]["data.image_size"] == 16
    published = tmp_path / "published"
    for name in ("claims_a", "claims_b"):
        (published / name).mkdir(parents=True)
        for f in ("trials.csv", "trivial.csv", "records.csv"):
            shutil.copy(results / "results" / "claims_a" / f, published / name / f)
    (published / "claims_a" / "study.json").write_text(json.dumps(meta))
    files = [_study(tmp_path / "a.yaml", "claims_a"), _study(tmp_path / "b.yaml", "claims_b")]
    legacy = {k: v for k, v in meta.items() if k != "runs"}  # same preset recorded: pooled, no run shared
    (published / "claims_b" / "study.json").write_text(json.dumps({**legacy, "name": "claims_b"}))
    raw, _ = published_claims(files, published)
    row = raw.set_index("id").loc["dropout-l1"]
    assert row["shared_runs_counted_once"] == 0 and row["n"] == 4
    legacy.pop("preset")  # no preset recorded either: one row per folder
    (published / "claims_b" / "study.json").write_text(json.dumps({**legacy, "name": "claims_b"}))
    raw, _ = published_claims(files, published)
    rows = raw[raw["id"] == "dropout-l1"]
    assert sorted(rows["studies"]) == ["claims_a", "claims_b"] and set(rows["n"]) == {2}


def test_a_claim_reads_its_target_on_the_held_out_loss_where_it_says_so(tmp_path):
    """`signal: val_loss`: images to reach the baseline's final held-out loss, read on the loss curve
    (eval.loss_every_epochs) while the sample-based metrics run only at the end."""
    from bench.report.cost import first_reach

    claim = {"id": "dropout-images", "statement": "dropout reaches the held-out loss", "paper": "-",
             "compare": {"model.dropout": 0.1}, "measure": "to_baseline_images", "signal": "val_loss"}
    base = {**TINY_BASE, "eval": {**TINY_BASE["eval"], "metrics": ["l1"], "every_epochs": 0, "loss_levels": 2,
                                  "loss_every_epochs": 1}}
    path = _study(tmp_path / "s.yaml", "signal", claims=[claim], base=base)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PALETTE_BENCH_CACHE", str(tmp_path / "cache"))
        assert main(["run", str(path), "--scale", "smoke", "--results", str(tmp_path / "r")]) == 0
    folder = tmp_path / "r" / "signal"
    records = pd.read_csv(folder / "records.csv")
    own = records[records["target_stage"].astype(str).str.lower() == "true"]
    loss = own[own["metric"] == "val_loss"]
    assert loss.groupby("trial")["epoch"].nunique().min() > 1  # a curve of the loss ...
    assert own[own["metric"] == "l1"].groupby("trial").size().max() == 1  # ... and one sampled evaluation
    trials = pd.read_csv(folder / "trials.csv")
    expected = []
    for seed in (0, 1):
        x, b = (trials[(trials["seed"] == seed) & (trials["label"] == f"dropout={d}")].iloc[0] for d in (0.1, 0.0))
        curve = loss[loss["trial"] == x["trial"]]
        expected.append(first_reach(curve, b["val_loss"], "val_loss")["images"])
    row = pd.read_csv(folder / "report" / "report_claims.csv").set_index("id").loc["dropout-images"]
    assert row["signal"] == "val_loss"
    reached = [e for e in expected if e == e]
    assert row["mean_x"] == pytest.approx(sum(reached) / len(reached)) if reached else math.isnan(row["mean_x"])
    assert "held-out loss" in (folder / "report.md").read_text().split("## Paper claims", 1)[1]
    bad = _study(tmp_path / "bad.yaml", "bad", claims=[{**CLAIMS[0], "signal": "val_loss"}])  # measure l1
    assert main(["run", str(bad), "--scale", "smoke", "--results", str(tmp_path / "r2"), "--dry-run"]) == 2


def test_a_target_no_seed_of_the_config_reached_is_a_result_not_missing_data():
    """results/reference/paper: face colorization from inpainting never reaches the from-scratch run's final
    held-out loss (0 of 3 seeds) while scratch does by definition; the claims table says so instead of
    "no paired data"."""
    repo = Path(__file__).resolve().parents[1]
    raw, view = published_claims([repo / "ablations" / "paper.yaml"], repo / "results" / "reference")
    row = raw.set_index("id").loc["t3-task-transfer-images"]
    assert row["verdict_text"].startswith("not reached") and "0/3" in row["verdict_text"]
    assert row["verdict"] == "" and row["n"] == 0


def test_one_seed_that_did_not_reach_the_target_says_so(tmp_path):
    """The quick start's one seed: the same row reads "not reached (0/1 seed ...)", as with three seeds, not
    "no paired data" (a new user's reading of the quick start's report)."""
    import json
    import shutil

    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path / "paper"
    shutil.copytree(repo / "results" / "reference" / "paper", folder, ignore=shutil.ignore_patterns("report*"))
    trials = pd.read_csv(folder / "trials.csv")
    trials[trials["seed"] == 0].to_csv(folder / "trials.csv", index=False)
    records = pd.read_csv(folder / "records.csv.gz")
    (folder / "records.csv.gz").unlink()
    records[records["trial"].isin(trials.loc[trials["seed"] == 0, "trial"])].to_csv(folder / "records.csv", index=False)
    meta = json.loads((folder / "study.json").read_text())
    (folder / "study.json").write_text(json.dumps({**meta, "seeds_override": [0]}))
    raw, _ = published_claims([repo / "ablations" / "paper.yaml"], tmp_path)
    row = raw.set_index("id").loc["t3-task-transfer-images"]
    assert row["verdict_text"] == "not reached (0/1 seed within the run; reference 1/1)"
