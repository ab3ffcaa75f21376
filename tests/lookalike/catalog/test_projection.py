"""REDUCE: what it accepts, what PCA and PCA-whitening keep, and a projection file that is not the manifest's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.projection import Projection, Reduction
from lookalike.errors import BadReduction, ProjectionMismatch
from tests.support import clusters


@pytest.mark.parametrize("text, kind, dim", [("none", None, 0), ("", None, 0), ("pca:256", "pca", 256),
                                             ("PCA-Whiten:64", "pca-whiten", 64)])
def test_reduce_is_none_pca_or_pca_whiten_with_a_dimension(text: str, kind: str | None, dim: int) -> None:
    reduction = Reduction.parse(text)
    assert (reduction.kind, reduction.dim) == (kind, dim)
    assert Reduction.parse(str(reduction)) == reduction


@pytest.mark.parametrize("text", ["pca", "pca:", "pca:0", "pca:-3", "svd:64", "pca:64:1", "pca:1e3"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(BadReduction, match="pca-whiten:D"):
        Reduction.parse(text)


def test_more_dimensions_than_the_embedding_or_the_photos_span_is_refused() -> None:
    with pytest.raises(BadReduction, match="only 64"):
        Reduction.parse("pca:64").check(input_dim=64, vectors=1000)
    with pytest.raises(BadReduction, match="at most 29"):
        Reduction.parse("pca:64").check(input_dim=2048, vectors=30)


def test_pca_keeps_the_directions_of_most_variance_and_gives_unit_vectors() -> None:
    vectors, _ = clusters(n_per=40, dim=64)
    projection = Projection.learn(vectors, Reduction.parse("pca:8"))
    assert projection.matrix.shape == (8, 64) and projection.learned_on == len(vectors)
    projected = projection.apply(vectors)
    assert projected.shape == (len(vectors), 8)
    assert np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    rows = projection.matrix.astype(np.float64)
    assert np.allclose(rows @ rows.T, np.eye(8), atol=1e-5)  # orthonormal directions
    variances = ((vectors - projection.mean) @ rows.T).var(axis=0)
    assert list(variances) == sorted(variances, reverse=True)


def test_pca_whitening_gives_every_kept_direction_unit_variance() -> None:
    vectors, _ = clusters(n_per=40, dim=64)
    projection = Projection.learn(vectors, Reduction.parse("pca-whiten:8"))
    whitened = (vectors - projection.mean) @ projection.matrix.T
    assert np.allclose(whitened.var(axis=0, ddof=1), 1.0, atol=1e-3)


def test_a_single_vector_becomes_one_row() -> None:
    vectors, _ = clusters(n_per=20, dim=32)
    projection = Projection.learn(vectors, Reduction.parse("pca:4"))
    assert projection.apply(vectors[0]).shape == (1, 4)


def test_the_saved_projection_loads_back_only_with_its_own_digest(tmp_path: Path) -> None:
    vectors, _ = clusters(n_per=20, dim=32)
    projection = Projection.learn(vectors, Reduction.parse("pca-whiten:4"))
    path = tmp_path / "projection.npz"
    sha256 = projection.save(path)
    loaded = Projection.load(path, sha256, "pca-whiten:4", 32)
    assert np.array_equal(loaded.apply(vectors), projection.apply(vectors))

    other = Projection.learn(vectors[::-1][:30], Reduction.parse("pca-whiten:4"))
    other.save(path)  # another projection where the version's was
    with pytest.raises(ProjectionMismatch, match="sha256"):
        Projection.load(path, sha256, "pca-whiten:4", 32)
    with pytest.raises(ProjectionMismatch, match="pca:4"):  # the right file, a manifest naming another reduction
        Projection.load(path, other.save(path), "pca:4", 32)
    path.unlink()
    with pytest.raises(ProjectionMismatch, match="missing"):
        Projection.load(path, sha256, "pca-whiten:4", 32)
