"""Dimension reduction of embeddings: PCA or PCA-whitening, learned on the catalogue, saved in the version.

    REDUCE=none            the 2048-d embeddings as the model gives them (the default)
    REDUCE=pca:D           the catalogue's D directions of most variance
    REDUCE=pca-whiten:D    the same, each rescaled to unit variance

A flat index holds 4·D bytes a photo instead of 4·2048. The indexing job learns the projection
on the catalogue's embeddings and writes it to `projection.npz` (the mean and the D×2048 matrix),
its sha256 in the manifest; the similarity service projects every query embedding with it, so
the catalogue and the queries always share one space. A version never serves queries projected
with another reduction: the file's digest is checked on load.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike.errors import BadReduction, ProjectionMismatch

PROJECTION = "projection.npz"
"""The version's projection, when it was built with REDUCE other than none."""

REDUCE_HELP = ("none (the default), pca:D or pca-whiten:D, e.g. pca:256: the indexes hold D-dimensional vectors, "
               "learned on the catalogue's embeddings")
LEARN_SAMPLE = 100_000
"""At most this many catalogue vectors teach the projection; a random sample of a larger catalogue does as well."""
_SPEC = re.compile(r"^(pca|pca-whiten):([0-9]{1,5})$")
_CHUNK = 8192

ReductionKind = Literal["pca", "pca-whiten"]


@dataclass(frozen=True)
class Reduction:
    """What REDUCE asks for: nothing, or a kind of PCA and the dimensions it keeps."""

    kind: ReductionKind | None = None
    dim: int = 0

    @classmethod
    def parse(cls, text: str) -> Reduction:
        """`none`, `pca:D` or `pca-whiten:D`, or BadReduction saying what is accepted."""
        spec = text.strip().lower()
        if spec in ("", "none"):
            return cls()
        match = _SPEC.match(spec)
        if match is None or int(match.group(2)) < 1:
            raise BadReduction(f"REDUCE={text!r} is not understood; use {REDUCE_HELP}.")
        kind: ReductionKind = "pca" if match.group(1) == "pca" else "pca-whiten"
        return cls(kind, int(match.group(2)))

    def __str__(self) -> str:
        return "none" if self.kind is None else f"{self.kind}:{self.dim}"

    def output_dim(self, input_dim: int) -> int:
        return input_dim if self.kind is None else self.dim

    def check(self, input_dim: int, vectors: int) -> None:
        """Refuse what cannot be learned: more dimensions than the embedding has, or than the photos span."""
        if self.kind is None:
            return
        if self.dim >= input_dim:
            raise BadReduction(f"REDUCE={self} keeps {self.dim} dimensions, but the embeddings have only {input_dim}; "
                               f"ask for fewer, e.g. pca:256, or none.")
        if self.dim >= vectors:
            raise BadReduction(
                f"REDUCE={self} needs more than {self.dim} catalogue photos to learn {self.dim} directions from, "
                f"and there are {vectors}; ask for at most {max(1, vectors - 1)} dimensions, or none.")


@dataclass(frozen=True)
class Components:
    """The principal directions of some vectors, largest variance first: what every reduction is cut from."""

    mean: np.ndarray  # (d,) float64
    variances: np.ndarray  # (d,) descending
    directions: np.ndarray  # (d, d), one direction per row
    count: int

    @classmethod
    def of(cls, vectors: np.ndarray, seed: int = 0) -> Components:
        """Of a seeded sample of at most LEARN_SAMPLE vectors.

        The covariance is summed over chunks (float32 products, a float64 sum), so memory stays at
        d×d whatever the count.
        """
        if len(vectors) > LEARN_SAMPLE:
            rows = np.sort(np.random.default_rng(seed).choice(len(vectors), LEARN_SAMPLE, replace=False))
            vectors = vectors[rows]
        n, d = vectors.shape
        mean = np.zeros(d, np.float64)
        for start in range(0, n, _CHUNK):
            mean += vectors[start:start + _CHUNK].sum(axis=0, dtype=np.float64)
        mean /= n
        covariance = np.zeros((d, d), np.float64)
        for start in range(0, n, _CHUNK):
            centred = (vectors[start:start + _CHUNK] - mean).astype(np.float32)
            covariance += centred.T @ centred
        covariance /= max(n - 1, 1)
        variances, directions = np.linalg.eigh(covariance)  # ascending
        order = np.argsort(variances)[::-1]
        return cls(mean, variances[order], directions[:, order].T, n)


@dataclass(frozen=True)
class Projection:
    """x -> normalise(matrix @ (x - mean)): the embedding space into the index's D dimensions."""

    reduction: Reduction
    mean: np.ndarray  # (input_dim,)
    matrix: np.ndarray  # (dim, input_dim)
    learned_on: int

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    @classmethod
    def learn(cls, vectors: np.ndarray, reduction: Reduction, components: Components | None = None) -> Projection:
        """The vectors' `reduction.dim` principal directions (see `Components.of`), whitened if asked.

        Whitening divides each direction by its standard deviation; directions with next to no
        variance (duplicate photos leave some) are floored at a millionth of the largest, so they
        are not blown up into noise. `components` already computed for these vectors saves the work.
        """
        if reduction.kind is None:
            raise ValueError("REDUCE=none learns no projection")
        reduction.check(vectors.shape[1], len(vectors))
        components = components or Components.of(vectors)
        matrix = components.directions[:reduction.dim]
        if reduction.kind == "pca-whiten":
            top = components.variances[:reduction.dim]
            variance = np.maximum(top, max(float(top[0]), 1e-30) * 1e-6)
            matrix = matrix / np.sqrt(variance)[:, None]
        return cls(reduction, components.mean.astype(np.float32), np.ascontiguousarray(matrix, dtype=np.float32),
                   components.count)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors in the index's space, one per row (a single vector gives one row)."""
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, self.input_dim)
        out = np.empty((len(x), self.dim), np.float32)
        for start in range(0, len(x), _CHUNK):
            projected = (x[start:start + _CHUNK] - self.mean) @ self.matrix.T
            norms = np.linalg.norm(projected, axis=1, keepdims=True)
            out[start:start + _CHUNK] = projected / np.maximum(norms, 1e-12)
        return out

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, matrix=self.matrix, reduce=np.array(str(self.reduction)),
                 learned_on=np.array(self.learned_on))
        return buffer.getvalue()

    def save(self, path: Path) -> str:
        """Write the file; its sha256, for the manifest."""
        data = self.to_bytes()
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path, sha256: str, reduce: str, input_dim: int) -> Projection:
        """The version's projection, refused (ProjectionMismatch) unless it is the one its manifest names."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ProjectionMismatch(f"The index version was built with REDUCE={reduce} but its {path.name} is "
                                     "missing; build the index again.") from None
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise ProjectionMismatch(
                f"{path} has sha256 {found[:12]}…, the manifest says {sha256[:12]}…: this is not the projection the "
                f"version's vectors were made with (REDUCE={reduce}), so queries projected with it would search "
                "another space. Build the index again or roll back.")
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            mean, matrix = stored["mean"], stored["matrix"]
            saved_reduce, learned_on = str(stored["reduce"]), int(stored["learned_on"])
        reduction = Reduction.parse(saved_reduce)
        if saved_reduce != reduce or matrix.shape != (reduction.dim, input_dim) or mean.shape != (input_dim,):
            raise ProjectionMismatch(f"{path} holds a {saved_reduce} projection of shape {matrix.shape}; the manifest "
                                     f"says REDUCE={reduce} from {input_dim}-d embeddings. Build the index again.")
        return cls(reduction, mean.astype(np.float32), np.ascontiguousarray(matrix, dtype=np.float32), learned_on)
