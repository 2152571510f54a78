"""Dedup stage: exact and near-duplicate groups, one keeper each, and label conflicts.

Takes the clean stage's images (``clean/manifest.jsonl``) or any folder tree
(:func:`dedup_folder`); leaves ``dedup/report.json``, ``dedup/kept.jsonl``,
``dedup/report.html`` and its caches (hashes, ``dedup/features/``, verification outcomes) in
storage, so a refresh only works on new images.

Exact duplicates share a hash of their decoded pixels. Near duplicates are found in four
steps:

1. hashes (:mod:`~landmarks.dedup.hashing`): imagehash's pHash of every image, of its 8
   dihedral variants (flips and 90-degree rotations) and of its centre crop(s), computed from
   one reduced decode and one DCT;
2. search (:mod:`~landmarks.dedup.hamming`): every image's own hash and crop hashes are looked
   up among all images' dihedral hashes within ``threshold`` bits, with multi-index hashing;
3. verification (:mod:`~landmarks.dedup.verify`): a pair farther apart than ``sure_distance``
   is kept only if ORB keypoints agree on a similarity transform and the aligned pixels
   correlate, which separates a copy from a second photo taken from the same spot;
4. local features (:mod:`~landmarks.dedup.features`, :mod:`~landmarks.dedup.feature_index`,
   :mod:`~landmarks.dedup.candidates`), for what no global hash sees (crops anywhere, small
   rotations, overlays, and chains of these): ORB descriptors of every image, of its mirror and
   of its coarse view vote, through an inverted index, for the images they share features
   with, and the best-voted pairs not already grouped are verified as in 3 (any rotation, tile
   by tile, fine detail too where both pictures hold it).

Groups (:mod:`~landmarks.dedup.groups`) are the connected components of the confirmed pairs.
A group whose members carry different labels is a label conflict: every member is dropped and
reported (:mod:`~landmarks.dedup.report` draws the page). :mod:`~landmarks.dedup.stage` runs
it all on pipeline storage.
"""

from landmarks.dedup.folder import FolderResult, dedup_folder, list_files
from landmarks.dedup.groups import find_groups
from landmarks.dedup.pairs import (
    Pair,
    UnionFind,
    confirm_pairs,
    dihedral_phashes,
    feature_pairs,
    hash_candidates,
    hex_to_words,
    naive_phash,
    near_pairs,
    pair_distance,
)
from landmarks.dedup.stage import DedupOptions, DedupResult, dedup_clean

__all__ = [
    "DedupOptions",
    "DedupResult",
    "FolderResult",
    "Pair",
    "UnionFind",
    "confirm_pairs",
    "dedup_clean",
    "dedup_folder",
    "dihedral_phashes",
    "feature_pairs",
    "find_groups",
    "hash_candidates",
    "hex_to_words",
    "list_files",
    "naive_phash",
    "near_pairs",
    "pair_distance",
]
