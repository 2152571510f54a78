"""Champion promotion: only a model that beats the champion on the same test split wins."""

from pathlib import Path

import pytest

from landmarks.storage import read_json, read_jsonl
from landmarks.train.registry import (
    champion_model_path,
    create_run,
    list_runs,
    promote_if_better,
    read_champion,
)


def _run(runs: Path, run_id: str) -> Path:
    run_dir = create_run(runs, run_id, {"dataset_version": "v1", "model": {"name": "cnn"}})
    (run_dir / "model.keras").write_bytes(b"not a real model; promotion only reads metrics")
    return run_dir


def test_first_run_becomes_champion_and_a_worse_one_does_not(tmp_path: Path):
    runs = tmp_path / "runs"
    a = _run(runs, "a")
    first = promote_if_better(runs, "a", "v1", {"top1": 0.6, "loss": 1.0}, a / "model.keras")
    assert first.promoted and "no champion" in first.reason
    assert champion_model_path(runs) == (a / "model.keras").resolve()
    b = _run(runs, "b")
    worse = promote_if_better(runs, "b", "v1", {"top1": 0.55, "loss": 0.9}, b / "model.keras")
    assert not worse.promoted and "does not beat" in worse.reason
    assert read_champion(runs)["run_id"] == "a"
    text = worse.markdown()
    assert "not promoted" in text and "| champion before | a | 0.6000" in text
    # A tie on top-1 needs a lower loss.
    c = _run(runs, "c")
    tie = promote_if_better(runs, "c", "v1", {"top1": 0.6, "loss": 0.8}, c / "model.keras")
    assert tie.promoted and read_champion(runs)["run_id"] == "c"
    assert [d["candidate_run"] for d in read_jsonl(runs / "promotions.jsonl")] == ["a", "b", "c"]
    assert read_json(b / "promotion.json")["promoted"] is False
    listed = {r["run_id"]: r["champion"] for r in list_runs(runs)}
    assert listed == {"a": False, "b": False, "c": True}


def test_champion_of_another_split_is_reevaluated_on_the_candidates_split(tmp_path: Path):
    runs = tmp_path / "runs"
    a = _run(runs, "a")
    promote_if_better(runs, "a", "v1", {"top1": 0.9, "loss": 0.3}, a / "model.keras")
    b = _run(runs, "b")
    asked = []

    def champion_on_v2(model_path: Path) -> dict:
        asked.append(model_path)
        return {"top1": 0.5, "loss": 1.5}  # the old champion on the new, harder split

    # 0.7 < 0.9 recorded on v1, but beats the champion's 0.5 on the same (v2) split.
    d = promote_if_better(
        runs, "b", "v2", {"top1": 0.7, "loss": 1.0}, b / "model.keras", champion_on_v2
    )
    assert asked == [(a / "model.keras").resolve()]
    assert d.promoted and d.champion_top1 == 0.5 and "same test split" in d.reason
    c = _run(runs, "c")
    unknown = promote_if_better(runs, "c", "v3", {"top1": 0.99, "loss": 0.1}, c / "model.keras")
    assert not unknown.promoted and "could not be re-evaluated" in unknown.reason


def test_no_champion_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no champion"):
        champion_model_path(tmp_path / "runs")
