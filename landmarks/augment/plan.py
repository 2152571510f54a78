"""The plan: per class, its train sources in a seeded order and how many copies it wants."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClassPlan:
    """``wanted`` copies of one class, spread over its sources as evenly as possible.

    Source ``j`` (in the seeded order of ``sources``) gets ``wanted // n`` copies, one more if
    ``j < wanted % n``; copies of one source are consecutive in the plan.
    """

    class_name: str
    sources: tuple[str, ...]
    wanted: int

    def copies_of(self, j: int) -> int:
        q, r = divmod(self.wanted, len(self.sources))
        return q + (1 if j < r else 0)

    def entry(self, position: int) -> tuple[str, int]:
        """(source, copy index) of the ``position``-th copy of this class."""
        q, r = divmod(self.wanted, len(self.sources))
        head = r * (q + 1)
        if position < head:
            j, copy = divmod(position, q + 1)
        else:
            j, copy = divmod(position - head, q)
            j += r
        return self.sources[j], copy


@dataclass(frozen=True)
class Plan:
    classes: tuple[ClassPlan, ...]
    chunk_size: int

    @property
    def total(self) -> int:
        return sum(c.wanted for c in self.classes)

    @property
    def num_chunks(self) -> int:
        return -(-self.total // self.chunk_size)

    def chunk_len(self, index: int) -> int:
        return min(self.chunk_size, self.total - index * self.chunk_size)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, str, int]]:
        """(source, class, copy) of plan positions ``start`` .. ``stop`` (exclusive)."""
        stop = self.total if stop is None else min(stop, self.total)
        offset = 0
        for cls in self.classes:
            lo, hi = max(start, offset), min(stop, offset + cls.wanted)
            for position in range(lo - offset, hi - offset):
                source, copy = cls.entry(position)
                yield source, cls.class_name, copy
            offset += cls.wanted

    def chunk_entries(self, index: int) -> Iterator[tuple[str, str, int]]:
        return self.entries(index * self.chunk_size, (index + 1) * self.chunk_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size,
            "classes": [
                {"class": c.class_name, "wanted": c.wanted, "sources": list(c.sources)}
                for c in self.classes
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            classes=tuple(
                ClassPlan(c["class"], tuple(c["sources"]), int(c["wanted"]))
                for c in data["classes"]
            ),
            chunk_size=int(data["chunk_size"]),
        )


def _order_key(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}|order|{path}".encode()).hexdigest()


def make_plan(
    train: list[dict[str, Any]],
    multiplier: float,
    target_per_class: int | None,
    chunk_size: int = 500,
    seed: int = 42,
) -> Plan:
    """How many copies each class gets and from which sources, deterministically.

    ``target_per_class`` N tops every class up to N train images (a class already at or above N
    gets no copies: it is never cut down); otherwise each class gets round(multiplier * n).
    Sources are taken in a seeded order, so when the copies do not divide evenly the extra ones
    fall on a random-looking subset rather than on the alphabetically first files.
    """
    by_class: dict[str, list[str]] = {}
    for record in train:
        by_class.setdefault(record["class"], []).append(record["path"])
    classes = []
    for class_name in sorted(by_class):
        sources = sorted(set(by_class[class_name]), key=lambda p: (_order_key(seed, p), p))
        n = len(sources)
        if target_per_class is not None:
            wanted = max(0, target_per_class - n)
        else:
            wanted = round(multiplier * n)
        classes.append(ClassPlan(class_name, tuple(sources), wanted))
    return Plan(tuple(classes), chunk_size)
