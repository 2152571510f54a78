"""Features learned from the photos themselves, without labels (the suspects' fallback when
no ImageNet weights are installed): k-means "patch words" on whitened 6x6 colour patches of a
32 px thumbnail with triangle encoding and 2x2 sum pooling (Coates and Ng, 2011), a 4x4 grid of
Lab colour means and spreads, and a GIST-like grid of Gabor energies."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image


def _resize_all(pixels: np.ndarray, side: int) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(p).resize((side, side), Image.Resampling.BOX)) for p in pixels]
    ).astype(np.float32)


class PatchWords:
    """Unsupervised k-means features on whitened colour patches (no labels involved)."""

    def __init__(self, k: int, side: int = 32, patch: int = 6, seed: int = 0) -> None:
        self.k, self.side, self.patch, self.seed = k, side, patch, seed

    def _patches(self, small: np.ndarray) -> np.ndarray:
        # a view: (n, H, W, patch*patch*3) without copying
        view = sliding_window_view(small, (self.patch, self.patch, 3), axis=(1, 2, 3))[:, :, :, 0]
        return view.reshape(*view.shape[:3], -1)

    @staticmethod
    def _normalise(rows: np.ndarray) -> np.ndarray:
        rows = rows - rows.mean(-1, keepdims=True)
        return rows / np.sqrt(rows.var(-1, keepdims=True) + 10.0)

    def fit(self, pixels: np.ndarray, num_samples: int = 50_000, iterations: int = 10):
        rng = np.random.default_rng(self.seed)
        view = sliding_window_view(
            _resize_all(pixels, self.side), (self.patch, self.patch, 3), axis=(1, 2, 3)
        )
        n, h, w = view.shape[:3]
        take = min(num_samples, n * h * w)
        flat = rng.choice(n * h * w, take, replace=False)
        a, rest = np.divmod(flat, h * w)
        b, c = np.divmod(rest, w)
        sample = self._normalise(view[a, b, c, 0].reshape(take, -1))
        self.mean = sample.mean(0)
        eigval, eigvec = np.linalg.eigh(np.cov(sample - self.mean, rowvar=False))
        self.whiten = (eigvec / np.sqrt(eigval + 0.1)) @ eigvec.T
        white = ((sample - self.mean) @ self.whiten).astype(np.float32)
        k = min(self.k, len(white))
        centres = white[rng.choice(len(white), k, replace=False)].copy()
        for _ in range(iterations):
            nearest = (centres**2).sum(1)[None] - 2 * white @ centres.T
            assign = nearest.argmin(1)
            counts = np.bincount(assign, minlength=k)
            sums = np.zeros_like(centres)
            np.add.at(sums, assign, white)
            filled = counts > 0
            centres[filled] = sums[filled] / counts[filled, None]
        self.centres = centres
        return self

    def encode(self, pixels: np.ndarray, flip: bool = False) -> np.ndarray:
        small = _resize_all(pixels, self.side)
        if flip:
            small = np.ascontiguousarray(small[:, :, ::-1])
        patches = self._patches(small)
        n, h, w, _ = patches.shape
        c2 = (self.centres**2).sum(1)[None]
        out = np.empty((n, 4 * len(self.centres)), np.float32)
        for i in range(n):
            z = ((self._normalise(patches[i].reshape(h * w, -1)) - self.mean) @ self.whiten).astype(
                np.float32
            )
            dist = np.sqrt(np.maximum((z**2).sum(1)[:, None] - 2 * z @ self.centres.T + c2, 0))
            act = np.maximum(dist.mean(1, keepdims=True) - dist, 0).reshape(h, w, -1)
            hh, ww = h // 2, w // 2
            quads = [act[:hh, :ww], act[:hh, ww:], act[hh:, :ww], act[hh:, ww:]]
            out[i] = np.concatenate([q.sum((0, 1)) for q in quads])
        return np.sqrt(out)


def lab_grid(pixels: np.ndarray, grid: int = 4) -> np.ndarray:
    """Mean and spread of L*a*b* colour in a grid: where the sky, stone and water are."""
    import cv2  # opencv's Lab is the CIE one; Pillow has no direct RGB -> Lab conversion

    n = len(pixels)
    cell = 8
    side = grid * cell
    lab = np.stack(
        [
            cv2.cvtColor(
                cv2.resize(p, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB
            )
            for p in pixels
        ]
    ).astype(np.float32)
    cells = lab.reshape(n, grid, cell, grid, cell, 3)
    return np.concatenate(
        [cells.mean((2, 4)).reshape(n, -1), cells.std((2, 4)).reshape(n, -1)], axis=1
    )


def gist(
    pixels: np.ndarray,
    side: int = 64,
    grid: int = 4,
    frequencies: tuple[float, ...] = (0.3, 0.15, 0.075, 0.0375),
    orientations: int = 8,
) -> np.ndarray:
    """Gabor energies (4 scales x 8 orientations) pooled on a 4x4 grid: the scene's layout."""
    grey = _resize_all(pixels, side).mean(-1) / 255.0
    grey = grey - grey.mean((1, 2), keepdims=True)
    grey = grey / (grey.std((1, 2), keepdims=True) + 0.05)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    radius, angle = np.hypot(fx, fy), np.arctan2(fy, fx)
    spectrum = np.fft.fft2(grey)
    n, cell = len(grey), side // grid
    feats = []
    for f0 in frequencies:
        for o in range(orientations):
            dtheta = np.angle(np.exp(1j * (angle - np.pi * o / orientations)))
            gabor = np.exp(-((radius - f0) ** 2) / (2 * (0.35 * f0) ** 2)) * np.exp(
                -(dtheta**2) / (2 * (np.pi / orientations / 1.2) ** 2)
            )
            energy = np.abs(np.fft.ifft2(spectrum * gabor))
            feats.append(energy.reshape(n, grid, cell, grid, cell).mean((2, 4)).reshape(n, -1))
    return np.sqrt(np.concatenate(feats, axis=1)).astype(np.float32)
