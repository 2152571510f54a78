"""Lookups of many query images in a :class:`~landmarks.dedup.feature_index.FeatureIndex`,
spread over processes that share the index.

A lookup spends its time on numpy gathers over the index's tables. Threads overlap only part
of it (some numpy steps hold the GIL), so where processes can be forked, the searching
processes are forked after the index is built: they read its tables from the parent's memory
(copy-on-write, never written) and send back only the votes. On the 2-core machine this
searched 100,000 images' synthetic descriptors 0.98x-1.21x as fast as two threads, 1.08x in
the median of four runs, the more the busier the machine (``benchmarks/dedup_edits.py``, its
scale part). Without ``fork`` (macOS, Windows) the jobs
run in threads, as the index cannot be shared with a new process cheaply.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from landmarks.dedup.feature_index import FeatureIndex, Votes


@dataclass(frozen=True)
class SearchJob:
    """Query images ``start..stop-1`` (their descriptors in one view), the ``top_k`` best
    voted per image kept. ``queries`` carries their descriptor sets; without it they come from
    the pool's ``source``."""

    view: tuple[bool, bool]  # (mirrored, coarse)
    start: int
    stop: int
    top_k: int
    queries: Sequence[np.ndarray] | None = None


Source = Callable[[SearchJob], Sequence[np.ndarray]]

# What a searching process works on: the index and where its jobs' queries come from. Set
# by the pool's initializer in the forked process, from the arguments it inherits (not
# copied, not pickled).
_SEARCH: tuple[FeatureIndex, Source | None] | None = None


def _init_worker(index: FeatureIndex, source: Source | None) -> None:
    global _SEARCH
    _SEARCH = (index, source)


def _run(index: FeatureIndex, source: Source | None, job: SearchJob) -> Votes:
    queries = job.queries
    if queries is None:
        if source is None:
            raise ValueError("a job without queries needs the pool's source")
        queries = source(job)
    return index.votes(queries, first=job.start, top_k=job.top_k)


def _run_in_worker(job: SearchJob) -> Votes:
    assert _SEARCH is not None, "search_pool sets the index up"
    return _run(*_SEARCH, job)


def forks() -> bool:
    """Can the searching processes be forked (and so share the index)?"""
    return "fork" in multiprocessing.get_all_start_methods()


Runner = Callable[..., list[Votes]]


@contextmanager
def search_pool(
    index: FeatureIndex, source: Source | None, workers: int, processes: bool = True
) -> Iterator[Runner]:
    """A function ``run(jobs, on_done=None)`` that runs search jobs over ``index`` and returns
    their votes in order (``on_done(k)``: the first ``k`` are done): in ``workers`` processes
    forked with the index, in threads where processes cannot be forked (or with
    ``processes=False``), in this process for one worker."""
    pool: Executor | None = None
    here = functools.partial(_run, index, source)
    results: Callable[[Sequence[SearchJob]], Iterable[Votes]]
    if workers <= 1:
        results = functools.partial(map, here)
    elif processes and forks():
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(index, source),
        )
        results = functools.partial(pool.map, _run_in_worker)
    else:
        pool = ThreadPoolExecutor(workers)
        results = functools.partial(pool.map, here)

    def run(jobs: Sequence[SearchJob], on_done: Callable[[int], None] | None = None) -> list[Votes]:
        out = []
        for votes in results(jobs):
            out.append(votes)
            if on_done:
                on_done(len(out))
        return out

    try:
        yield run
    finally:
        if pool is not None:
            pool.shutdown()


def split(num: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` spans of about equal size covering ``0..num-1`` (empty ones left out)."""
    cuts = np.linspace(0, num, max(1, parts) + 1).astype(int).tolist()
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def merge(votes: Sequence[Votes]) -> Votes:
    """The votes of several jobs as one."""
    if not votes:
        empty = np.empty(0, dtype=np.int64)
        return Votes(empty, empty, np.empty(0, dtype=np.int32))
    return Votes(
        np.concatenate([v.query for v in votes]),
        np.concatenate([v.db for v in votes]),
        np.concatenate([v.votes for v in votes]),
    )
