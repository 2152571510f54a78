from pathlib import Path

import pytest
from pydantic import ValidationError

from landmarks.catalog import CatalogError, load_catalog
from landmarks.config import load_settings


def test_defaults_match_the_original_project():
    s = load_settings()
    assert s.train.activation == "leaky_relu" and s.train.leaky_alpha == 0.01
    assert s.train.dropout == 0.25 and s.train.optimizer == "adam"
    assert s.crawl.max_per_class == 400
    assert s.source == "web"


def test_precedence_flags_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'source = "/data"\n[train]\nepochs = 7\nbatch_size = 16\n[dedup]\nthreshold = 4\n'
    )
    s = load_settings(cfg)
    assert (s.source, s.train.epochs, s.train.batch_size, s.dedup.threshold) == ("/data", 7, 16, 4)
    monkeypatch.setenv("LANDMARKS_TRAIN__EPOCHS", "9")
    s = load_settings(cfg)
    assert s.train.epochs == 9 and s.train.batch_size == 16
    s = load_settings(cfg, {"train": {"epochs": 3, "batch_size": None}})
    assert s.train.epochs == 3 and s.train.batch_size == 16


def test_invalid_values_are_refused(tmp_path: Path):
    with pytest.raises(ValidationError):
        load_settings(None, {"train": {"epochs": 0}})
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_default_catalog_has_the_17_original_landmarks():
    catalog = load_catalog()
    assert len(catalog) == 17
    by_name = {lm.name: lm for lm in catalog}
    assert "숭례문" in by_name["sungnyemun"].queries
    assert "Sungnyemun Gate Seoul" in by_name["sungnyemun"].queries
    assert "万里长城" in by_name["great_wall_of_china"].queries
    assert all(len(lm.queries) >= 2 and lm.country for lm in catalog)


def test_user_catalog(tmp_path: Path):
    path = tmp_path / "cat.toml"
    path.write_text('[[landmark]]\nname = "big_ben"\nenglish = "Big Ben"\n')
    (lm,) = load_catalog(path)
    assert lm.name == "big_ben" and lm.queries == ("Big Ben",)
    path.write_text('[[landmark]]\nname = "Big Ben"\n')
    with pytest.raises(CatalogError, match="lowercase"):
        load_catalog(path)
