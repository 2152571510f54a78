from pathlib import Path

import pytest

from landmarks.catalog import CatalogError, load_catalog
from landmarks.config import load_settings
from landmarks.errors import NotFound, SettingsError


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


def test_invalid_values_are_refused_in_one_readable_line(tmp_path: Path):
    with pytest.raises(SettingsError) as err:
        load_settings(None, {"train": {"epochs": 0}})
    assert str(err.value) == "train.epochs must be >= 1 (got 0)"
    one_line = r"train.model must be one of '\w+', .* \(got 'resnet'\)"
    with pytest.raises(SettingsError, match=one_line):
        load_settings(None, {"train": {"model": "resnet"}})
    with pytest.raises(NotFound):
        load_settings(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[trian]\nepochs = 2\n",
            "unknown setting 'trian' in config file {path} (did you mean 'train'?)",
        ),
        (
            "epochs = 2\n",
            "unknown setting 'epochs' in config file {path} (did you mean 'train.epochs'?)",
        ),
        (
            "[train]\nimage_sise = 64\n",
            "unknown setting 'train.image_sise' in config file "
            "{path} (did you mean 'train.image_size'?)",
        ),
    ],
)
def test_unknown_keys_in_a_config_file_are_errors(tmp_path: Path, toml: str, message: str):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert str(err.value) == message.format(path=path)


def test_unknown_environment_variables_and_overrides_are_errors(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LANDMARKS_TRAIN__EPOCS", "3")
    with pytest.raises(
        SettingsError,
        match="LANDMARKS_TRAIN__EPOCS in the environment .did you mean 'LANDMARKS_TRAIN__EPOCHS'",
    ):
        load_settings()
    monkeypatch.delenv("LANDMARKS_TRAIN__EPOCS")
    monkeypatch.setenv("LANDMARKS_TRAIN__EPOCHS", "0")
    with pytest.raises(SettingsError, match=r"^train.epochs must be >= 1 \(got '0'\)$"):
        load_settings()
    monkeypatch.delenv("LANDMARKS_TRAIN__EPOCHS")
    with pytest.raises(
        SettingsError, match="'dedup.treshold' in the overrides .did you mean 'dedup.threshold'"
    ):
        load_settings(None, {"dedup": {"treshold": 4}})
    # Known names still work, nested tables (crawl.endpoints) included.
    s = load_settings(None, {"crawl": {"endpoints": {"bing": "http://127.0.0.1:1/b"}}})
    assert s.crawl.endpoints == {"bing": "http://127.0.0.1:1/b"}


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
