"""The MRL maths module."""

import numpy as np
import pytest

from pgmrl import matryoshka as mrl


def test_truncate_renormalises():
    x = np.array([[3.0, 4.0, 12.0]])
    t = mrl.truncate(x, 2)
    assert np.allclose(t, [[0.6, 0.8]])
    with pytest.raises(ValueError):
        mrl.truncate(x, 0)


def test_rotation_is_orthonormal_and_ordered(corpus_vectors):
    docs, _ = corpus_vectors
    comps, explained = mrl.fit_rotation(docs[:2000], 64)
    assert comps.shape == (64, 384)
    assert np.allclose(comps @ comps.T, np.eye(64), atol=1e-5)
    assert np.all(np.diff(explained) <= 1e-12)
    # the rotation keeps more of each vector's energy in its first components than a raw prefix does
    x = mrl.normalize(docs[2000:3000])
    rotated_energy = ((x @ comps.T) ** 2).sum(1).mean()
    prefix_energy = (x[:, :64] ** 2).sum(1).mean()
    assert rotated_energy > prefix_energy + 0.2


def test_project_of_full_rotation_preserves_cosines(corpus_vectors):
    docs, _ = corpus_vectors
    comps, _ = mrl.fit_rotation(docs[:1000], 384)
    x = mrl.normalize(docs[1000:1010])
    p = mrl.project(x, comps)
    assert np.allclose(p @ p.T, x @ x.T, atol=1e-4)
    assert np.allclose(mrl.project(x, comps, 32), mrl.truncate(p, 32), atol=1e-5)


def test_agreement():
    assert mrl.agreement([1, 2, 3], [3, 2, 1], 3) == 1.0
    assert mrl.agreement([1, 2, 9], [1, 2, 3], 3) == pytest.approx(2 / 3)
