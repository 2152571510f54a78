"""The local-feature index: votes between real photos and their edited copies, keys that grow
with the indexed descriptors, stop words, the sketch check, and a build whose buckets hold
exactly the descriptors a plain sort by key files there."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from landmarks.dedup import feature_index, features
from landmarks.dedup.feature_index import FeatureIndex, IndexOptions

PHOTOS = [
    "petra/ho_train_Petra_24.jpg",
    "colosseum/ht_000018.jpg",
    "eiffel_tower/ht_000186.jpg",
    "machu_picchu/ho_train_Machu_Picchu_6.jpg",
    "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_1.jpg",
]


def _descriptors(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, size=(count, 32), dtype=np.uint8)


def _pairs(v: feature_index.Votes) -> dict[tuple[int, int], int]:
    return {
        (q, d): n for q, d, n in zip(v.query.tolist(), v.db.tolist(), v.votes.tolist(), strict=True)
    }


def test_real_photos_and_their_crops_vote_for_each_other(real_raw: Path):
    feats = []
    for rel in PHOTOS:
        with Image.open(real_raw / rel) as src:
            im = ImageOps.exif_transpose(src).convert("RGB")
        w, h = im.size
        feats.append(features.extract_image(im))
        # an off-centre crop keeping 60% x 65%, a little turned: a copy no global hash sees
        crop = im.crop((round(w * 0.4), round(h * 0.35), w, h)).rotate(4, expand=True)
        feats.append(features.extract_image(crop))
    index = FeatureIndex([f.descriptors for f in feats], IndexOptions())
    assert index.bits == IndexOptions().bits  # a few thousand descriptors: the fewest bits
    found = _pairs(index.votes([f.descriptors for f in feats], top_k=2))
    for k in range(len(PHOTOS)):
        original, copy = 2 * k, 2 * k + 1
        assert found.get((copy, original), 0) >= 5, (PHOTOS[k], found)
        assert found.get((original, copy), 0) >= 5, (PHOTOS[k], found)
    assert all(q != d for q, d in found)  # an image does not vote for itself
    assert all(n >= IndexOptions().min_votes for n in found.values())
    # the first image's votes, looked up in chunks of one image, are the same
    alone = _pairs(index.votes([feats[0].descriptors], chunk=1, top_k=2))
    assert alone == {p: n for p, n in found.items() if p[0] == 0}


def test_key_bits_grow_with_the_indexed_descriptors():
    options = IndexOptions()
    assert feature_index.key_bits(options, 0) == 20
    assert feature_index.key_bits(options, 800_000) == 20
    assert feature_index.key_bits(options, 2_000_000) == 21
    assert feature_index.key_bits(options, 25_600_000) == 24  # 100,000 images: max_bits
    assert feature_index.key_bits(IndexOptions(bits=12, max_bits=16), 5000) == 13
    rng = np.random.default_rng(1)
    index = FeatureIndex.from_stacked(
        _descriptors(rng, 9000), np.full(30, 300), IndexOptions(bits=12, max_bits=16)
    )
    assert index.bits == 14
    assert index.positions.shape == (6, 14)
    assert all(len(o) == (1 << 14) + 1 for o in index.offsets)


def _reference_buckets(
    index: FeatureIndex, stacked: np.ndarray, counts: np.ndarray, table: int
) -> dict[int, list[int]]:
    """Bucket -> sorted words, from the codes of every descriptor, stop words dropped."""
    code = feature_index.descriptor_codes(stacked, index.byte_tables[table])
    keys = code[:, 0].astype(np.int64)
    owner = np.repeat(np.arange(len(counts)), counts).astype(np.uint64)
    words = code[:, 1] | (owner << np.uint64(index.sketch_bits))
    buckets: dict[int, list[int]] = {}
    for k, w in zip(keys.tolist(), words.tolist(), strict=True):
        buckets.setdefault(k, []).append(w)
    return {k: sorted(w) for k, w in buckets.items() if len(w) <= index.options.max_bucket}


def _buckets(index: FeatureIndex, table: int) -> dict[int, list[int]]:
    starts, offsets = index.group_starts[table], index.offsets[table]
    keys = np.arange(1 << index.bits)
    begin = starts[keys >> index.group_bits] + offsets[keys]
    end = starts[(keys + 1) >> index.group_bits] + offsets[keys + 1]
    words = index.postings[table]
    return {
        k: sorted(words[b:e].tolist())
        for k, b, e in zip(keys.tolist(), begin.tolist(), end.tolist(), strict=True)
        if e > b
    }


@pytest.mark.parametrize("words", ["64-bit", "32-bit"])
def test_buckets_hold_what_a_plain_sort_files_there_and_skip_stop_words(
    words: str, monkeypatch: pytest.MonkeyPatch
):
    if words == "32-bit":  # as an index of many descriptors has them, built in many chunks
        monkeypatch.setattr(feature_index, "WIDE_WORDS", 0)
        monkeypatch.setattr(feature_index, "BUILD_CHUNK", 256)
    rng = np.random.default_rng(2)
    # uneven images, one without descriptors, and a corner found in many images: a stop word
    counts = rng.integers(0, 300, size=40)
    counts[7] = 0
    stacked = _descriptors(rng, int(counts.sum()))
    stacked[::50] = stacked[0]
    options = IndexOptions(bits=12, max_bits=12, max_bucket=6)
    monkeypatch.setattr(feature_index, "BUILD_THREADS", 1)
    one = FeatureIndex.from_stacked(stacked, counts, options)
    monkeypatch.setattr(feature_index, "BUILD_THREADS", 2)
    two = FeatureIndex.from_stacked(stacked, counts, options)
    assert two.postings[0].dtype == (np.uint64 if words == "64-bit" else np.uint32)
    assert two.sketch_bits == (64 if words == "64-bit" else 32) - 6  # 40 images: 6 bits
    for table in range(options.tables):
        expected = _reference_buckets(one, stacked, counts, table)
        assert _buckets(one, table) == expected
        assert _buckets(two, table) == expected
    assert np.allclose(one.crowd, two.crowd)
    common = feature_index.descriptor_codes(stacked[:1], one.byte_tables[0])[0, 0]
    assert int(common) not in _buckets(one, 0)  # the corner shared by many: skipped
    # the list constructor files the same descriptors as the stacked one
    ends = np.cumsum(counts)
    sets = [stacked[e - c : e] for c, e in zip(counts, ends, strict=True)]
    listed = FeatureIndex(sets, options)
    for table in range(options.tables):
        assert np.array_equal(listed.postings[table], two.postings[table])


@pytest.mark.parametrize("words", ["64-bit", "32-bit"])
def test_a_shared_key_votes_only_when_the_sketch_agrees_too(
    words: str, monkeypatch: pytest.MonkeyPatch
):
    if words == "32-bit":
        monkeypatch.setattr(feature_index, "WIDE_WORDS", 0)
    rng = np.random.default_rng(3)
    options = IndexOptions(bits=12, max_bits=12, tables=1, min_votes=2)
    query = _descriptors(rng, 40)
    index = FeatureIndex([query], options)  # only to read its key and sketch positions
    key = index.positions[0]
    sketch = feature_index.sketch_positions(options, index.positions, index.sketch_bits)[0]
    bits = np.unpackbits(query, axis=1)

    def flipped(keep: np.ndarray) -> np.ndarray:
        out = 1 - bits
        out[:, keep] = bits[:, keep]
        return np.packbits(out, axis=1)

    near = flipped(np.concatenate([key, sketch]))  # same key, same sketch, all else flipped
    far = flipped(key)  # same key, every sketch bit flipped
    index = FeatureIndex([near, far, _descriptors(rng, 40)], options)
    found = _pairs(index.votes([query], first=3))
    assert found == {(3, 0): 40}


def test_one_vote_per_query_descriptor_however_many_tables_agree():
    rng = np.random.default_rng(4)
    db = _descriptors(rng, 30)
    index = FeatureIndex([db, _descriptors(rng, 30)], IndexOptions(bits=12, max_bits=12))
    found = index.votes([db[:10]], first=5)
    assert _pairs(found) == {(5, 0): 10}  # equal descriptors agree in all 6 tables
    none = np.zeros((0, 32), np.uint8)
    for found in (
        index.votes([none]),
        FeatureIndex([none, none], IndexOptions()).votes([none, db]),
        FeatureIndex([], IndexOptions()).votes([db]),
    ):
        assert len(found.query) == len(found.db) == len(found.votes) == 0
