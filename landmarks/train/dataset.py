"""The dataset as training sees it: split records and augmented files as (path, class) lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from landmarks.augment import list_augmented
from landmarks.storage import read_jsonl


@dataclass(frozen=True)
class Items:
    paths: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class DatasetView:
    class_names: list[str]
    train: Items
    val: Items
    test: Items
    num_augmented: int


def load_dataset(
    split_manifest: Path, clean_dir: Path, augmented_dir: Path | None = None
) -> DatasetView:
    """Train = clean train images + committed augmented images; val and test are clean only."""
    records = read_jsonl(split_manifest)
    if not records:
        raise ValueError(f"{split_manifest} is empty or missing: run the split stage first")
    class_names = sorted({r["class"] for r in records})
    index = {name: i for i, name in enumerate(class_names)}
    by_split: dict[str, Items] = {s: Items([], []) for s in ("train", "val", "test")}
    for r in records:
        items = by_split[r["split"]]
        items.paths.append(str(clean_dir / r["path"]))
        items.labels.append(index[r["class"]])
    num_augmented = 0
    if augmented_dir is not None:
        for path, class_name in list_augmented(augmented_dir):
            by_split["train"].paths.append(str(path))
            by_split["train"].labels.append(index[class_name])
            num_augmented += 1
    return DatasetView(
        class_names=class_names,
        train=by_split["train"],
        val=by_split["val"],
        test=by_split["test"],
        num_augmented=num_augmented,
    )
