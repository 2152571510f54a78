"""Lookups spread over searching processes: the same votes as one process looking everything
up, whether the processes are forked with the index, threads stand in for them, or the jobs
carry their own queries."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from landmarks.dedup import candidates, features, search
from landmarks.dedup.feature_index import FeatureIndex, IndexOptions

PHOTOS = [
    "petra/ho_train_Petra_24.jpg",
    "colosseum/ht_000018.jpg",
    "eiffel_tower/ht_000186.jpg",
    "taj_mahal/ho_train_Taj_Mahal_1.png",
    "machu_picchu/ho_train_Machu_Picchu_6.jpg",
]


@pytest.fixture(scope="module")
def feats(real_raw: Path) -> list[features.LocalFeatures]:
    out = []
    for rel in PHOTOS:
        with Image.open(real_raw / rel) as src:
            im = ImageOps.exif_transpose(src).convert("RGB")
        w, h = im.size
        out.append(features.extract_image(im))
        out.append(features.extract_image(im.crop((w // 3, h // 4, w, h)).rotate(3)))
        out.append(features.extract_image(ImageOps.mirror(im).resize((w // 2, h // 2))))
    return out


def _table(votes: list) -> set[tuple[int, int, int]]:
    merged = search.merge(votes)
    return set(zip(merged.query.tolist(), merged.db.tolist(), merged.votes.tolist(), strict=True))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("fork", [True, False])
def test_searching_processes_find_the_votes_one_lookup_finds(feats, workers, fork, monkeypatch):
    if not fork:  # where processes cannot be forked with the index, threads do the lookups
        monkeypatch.setattr(search, "forks", lambda: False)
    index = FeatureIndex([f.descriptors for f in feats], IndexOptions())
    expected = {}
    for view in ((False, False), (True, False), (False, True)):
        queries = [f.view(*view)[1] for f in feats]
        expected[view] = _table([index.votes(queries, top_k=3)])
    assert expected[(False, False)] and expected[(True, False)] and expected[(False, True)]

    def source(job: search.SearchJob) -> list[np.ndarray]:
        return [f.view(*job.view)[1] for f in feats[job.start : job.stop]]

    jobs = [
        search.SearchJob(view, start, stop, 3)
        for view in expected
        for start, stop in search.split(len(feats), workers)
    ]
    with search.search_pool(index, source, workers) as run:
        done = run(jobs)
        # the same jobs carrying their queries, as the scale benchmark sends them
        carried = run([search.SearchJob(j.view, j.start, j.stop, 3, source(j)) for j in jobs])
    for view, table in expected.items():
        assert _table([v for j, v in zip(jobs, done, strict=True) if j.view == view]) == table
        assert _table([v for j, v in zip(jobs, carried, strict=True) if j.view == view]) == table
    assert search._SEARCH is None  # set in the searching processes only


def test_candidates_are_the_same_in_one_process_and_in_two(feats):
    one = candidates.candidates(feats, IndexOptions(), threads=1)
    two = candidates.candidates(feats, IndexOptions(), threads=2)
    assert one == two
    # each photo's crop and small mirrored copy are among them
    pairs = {(min(c.a, c.b), max(c.a, c.b)) for c in one}
    for k in range(len(PHOTOS)):
        assert (3 * k, 3 * k + 1) in pairs, PHOTOS[k]
        assert (3 * k, 3 * k + 2) in pairs, PHOTOS[k]


def test_the_search_reports_its_progress_span_by_span(feats, monkeypatch):
    whole = candidates.candidates(feats, IndexOptions(), threads=2)
    monkeypatch.setattr(candidates, "SEARCH_SPAN", 4)  # 15 images: 4 spans of 3 views
    seen: list[tuple[int, int]] = []
    found = candidates.candidates(
        feats, IndexOptions(), threads=2, progress=lambda done, total: seen.append((done, total))
    )
    assert found == whole  # the spans change how the work is cut, not what it finds
    assert seen == [(0, 15), (3, 15), (7, 15), (11, 15), (15, 15)]  # search.split(15, 4)


def test_two_pools_open_at_once_keep_to_their_own_index(feats):
    """Each pool hands its index to its own processes: two open at once (a task runner may
    run two dedups in threads of one process) do not mix them up."""
    sets = [feats[:9], feats[6:]]
    indexes = [FeatureIndex([f.descriptors for f in s], IndexOptions()) for s in sets]

    def jobs(s: list) -> list[search.SearchJob]:
        return [
            search.SearchJob((False, False), a, b, 3, [f.descriptors for f in s[a:b]])
            for a, b in search.split(len(s), 2)
        ]

    alone = [
        _table([i.votes([f.descriptors for f in s], top_k=3)])
        for i, s in zip(indexes, sets, strict=True)
    ]
    with (
        search.search_pool(indexes[0], None, 2) as first,
        search.search_pool(indexes[1], None, 2) as second,
    ):
        # the first pool's processes start only now, after the second pool was made
        together = [_table(first(jobs(sets[0]))), _table(second(jobs(sets[1])))]
    assert together == alone


def test_a_job_without_queries_needs_a_source(feats):
    index = FeatureIndex([f.descriptors for f in feats], IndexOptions())
    with search.search_pool(index, None, 1) as run, pytest.raises(ValueError, match="source"):
        run([search.SearchJob((False, False), 0, 2, 3)])


def test_split_covers_every_image_once():
    assert search.split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert search.split(2, 4) == [(0, 1), (1, 2)]
    assert search.split(0, 2) == []
    assert search.split(5, 0) == [(0, 5)]


def test_two_verify_pools_open_at_once_keep_to_their_own_features(real_raw: Path, tmp_path: Path):
    photo, other = real_raw / PHOTOS[0], real_raw / PHOTOS[1]
    with Image.open(photo) as src:
        im = ImageOps.exif_transpose(src).convert("RGB")
    w, h = im.size
    crop = tmp_path / "crop.png"
    im.crop((w // 4, h // 5, w, h)).save(crop)
    copies, strangers = [photo, crop], [photo, other]
    sets = [[features.extract_path(p) for p in paths] for paths in (copies, strangers)]
    pair = [candidates.FeatureCandidate(0, 1, 0, False)]
    with (
        candidates.verify_pool(sets[0], copies, 2) as first,
        candidates.verify_pool(sets[1], strangers, 2) as second,
    ):
        # the first pool's processes start only now, after the second pool was made
        found = candidates.verify_many(pair, sets[0], copies, first)
        refused = candidates.verify_many(pair, sets[1], strangers, second)
    assert found[0].ok, found
    assert not refused[0].ok, refused
