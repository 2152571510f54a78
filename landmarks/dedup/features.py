"""Local features for near-duplicate search: ORB keypoints of every image and of its mirror.

A global hash sees the whole frame, so a copy cropped off-centre, turned by a few degrees or
stamped with a text band hashes far from its original. Local features do not care: the
corners of a crop, a rotated copy or the part of a photo a logo leaves free are the same
corners as in the original, and ORB describes each with 256 bits that are invariant to
rotation and, through its image pyramid, to a change of scale. Mirroring is not one of its
invariances, so every image also gets the features of its mirror picture (used as queries).

Every picture is brought to ``FEATURE_SIDE`` pixels on its long side (up or down) before
detection, so a 224-pixel training crop and a 4000-pixel original are described at one scale.

A crop is the other way round: brought to ``FEATURE_SIDE``, its corners are seen larger than
the same corners in its original, and ORB gives the coarse levels of its pyramid, where they
would match, few keypoints. So every picture also has a *coarse view*: ``COARSE_FEATURES``
keypoints of the picture at ``COARSE_SIDE`` pixels, at the scale a crop keeping half of each
side has in its original. Coarse keypoints are only queries; their points are given in the
coordinates of the full view. (A coarse view of the mirror would find a mirrored crop; on the
real photos and their edits it proposed a quarter of all candidates and under 1% of the
copies, which the mirror's full view mostly finds anyway.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

FEATURE_SIDE = 320
NUM_FEATURES = 256
COARSE_SIDE = 160
COARSE_FEATURES = 128
FEATURE_VERSION = 4  # bump when the features change, so cached ones are redone


@dataclass(frozen=True)
class LocalFeatures:
    """ORB keypoints of one picture (at ``FEATURE_SIDE``), of its mirror and of its coarse view.

    ``points[k]`` is (x, y) of keypoint ``k`` in the normalised picture of ``size`` (w, h);
    ``mirror_points`` are in the mirrored picture's coordinates. ``source_side`` is the long
    side of the picture as decoded, before it was normalised (0: not known): how much detail
    the normalised picture can hold.
    """

    size: tuple[int, int]
    points: np.ndarray  # (k, 2) float32
    descriptors: np.ndarray  # (k, 32) uint8
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    source_side: int = 0
    coarse_points: np.ndarray = field(default_factory=lambda: _no_keypoints()[0])
    coarse_descriptors: np.ndarray = field(default_factory=lambda: _no_keypoints()[1])

    def view(self, mirrored: bool, coarse: bool) -> tuple[np.ndarray, np.ndarray]:
        """(points, descriptors) of one view: as is, mirrored, or coarse (as is)."""
        if coarse:
            if mirrored:
                raise ValueError("the coarse view has no mirror")
            return self.coarse_points, self.coarse_descriptors
        if mirrored:
            return self.mirror_points, self.mirror_descriptors
        return self.points, self.descriptors

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            size=np.array(self.size, dtype=np.int32),
            source_side=np.array(self.source_side, dtype=np.int32),
            coarse_points=self.coarse_points,
            coarse_descriptors=self.coarse_descriptors,
            points=self.points,
            descriptors=self.descriptors,
            mirror_points=self.mirror_points,
            mirror_descriptors=self.mirror_descriptors,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        with np.load(io.BytesIO(data)) as z:
            w, h = (int(v) for v in z["size"])
            return cls(
                (w, h),
                z["points"],
                z["descriptors"],
                z["mirror_points"],
                z["mirror_descriptors"],
                int(z["source_side"]),
                z["coarse_points"],
                z["coarse_descriptors"],
            )


_ORB: dict[int, cv2.ORB] = {}
SCALE_FACTOR = 1.2  # between the levels of ORB's image pyramid


def _orb(num_features: int) -> cv2.ORB:
    if num_features not in _ORB:
        _ORB[num_features] = cv2.ORB_create(  # type: ignore[attr-defined]
            nfeatures=num_features,
            scaleFactor=SCALE_FACTOR,
            fastThreshold=12,
            edgeThreshold=15,
            patchSize=15,
        )
    return _ORB[num_features]


def normalised_grey(im: Image.Image, side: int = FEATURE_SIDE) -> np.ndarray:
    """Grey uint8 pixels with the long side scaled (up or down) to ``side``."""
    grey = im if im.mode == "L" else im.convert("L")
    w, h = grey.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != grey.size:
        method = Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC
        grey = grey.resize(size, method, reducing_gap=2.0 if scale < 0.5 else None)
    return np.asarray(grey)


def open_normalised_grey(path: Path, side: int = FEATURE_SIDE) -> np.ndarray:
    """``normalised_grey`` of a file, a JPEG decoded at a reduced scale."""
    return _open_normalised_grey(path, side)[0]


def _open_normalised_grey(path: Path, side: int) -> tuple[np.ndarray, int]:
    """The normalised grey pixels of a file, and its long side as stored."""
    with Image.open(path) as im:
        source_side = max(im.size)
        if im.format == "JPEG":
            im.draft("L", (side, side))
        return normalised_grey(ImageOps.exif_transpose(im), side), source_side


def _no_keypoints() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)


def _detect(pixels: np.ndarray, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    return _described(*_orb(num_features).detectAndCompute(pixels, None))


def _described(
    keypoints: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if descriptors is None or not keypoints:
        return _no_keypoints()
    points = np.array([k.pt for k in keypoints], dtype=np.float32)
    return points, descriptors


def _mirrored(keypoints: Sequence[cv2.KeyPoint], width: int) -> list[cv2.KeyPoint]:
    """The keypoints ORB finds in the mirror picture: the same corners, mirrored on the
    pyramid level each was found on (a level of ``width / s`` pixels, rounded, for ``s`` the
    level's scale), and their orientation mirrored too."""
    mirrored = []
    for k in keypoints:
        s = SCALE_FACTOR**k.octave
        x = (round(width / s) - 1 - k.pt[0] / s) * s
        angle = (180.0 - k.angle) % 360.0
        mirrored.append(cv2.KeyPoint(x, k.pt[1], k.size, angle, k.response, k.octave, k.class_id))
    return mirrored


def extract(
    pixels: np.ndarray, num_features: int = NUM_FEATURES, source_side: int = 0
) -> LocalFeatures:
    """ORB features of normalised grey ``pixels`` and of their mirror picture, full and
    coarse views."""
    orb = _orb(num_features)
    keypoints, raw = orb.detectAndCompute(pixels, None)
    points, descriptors = _described(keypoints, raw)
    h, w = pixels.shape
    # the mirror's keypoints are the mirrored ones (ORB's detection is symmetric): only their
    # descriptors are computed, at half the cost of detecting them again
    mirror = np.ascontiguousarray(pixels[:, ::-1])
    if len(descriptors):
        mirror_points, mirror_descriptors = _described(
            *orb.compute(mirror, _mirrored(keypoints, w))
        )
    else:
        mirror_points, mirror_descriptors = _no_keypoints()
    scale = COARSE_SIDE / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        coarse_features = max(1, num_features * COARSE_FEATURES // NUM_FEATURES)
        coarse = _detect(small, coarse_features)
        up = np.array([w / size[0], h / size[1]], np.float32)
        coarse = (coarse[0] * up, coarse[1])
    else:
        coarse = _no_keypoints()
    return LocalFeatures(
        (w, h),
        points,
        descriptors,
        mirror_points,
        mirror_descriptors,
        source_side,
        *coarse,
    )


def extract_image(im: Image.Image, num_features: int = NUM_FEATURES) -> LocalFeatures:
    return extract(normalised_grey(im), num_features, max(im.size))


def extract_path(path: Path, num_features: int = NUM_FEATURES) -> LocalFeatures:
    pixels, source_side = _open_normalised_grey(path, FEATURE_SIDE)
    return extract(pixels, num_features, source_side)
