"""The paper's model-level baseline (averaged logit descriptors) and top-k precision,
checked against values computed by hand."""
import math

import numpy as np
import pytest

from zooql.methods.probelog import metrics as PM


def test_model_mean_descriptors_by_hand():
    # 3 probes; model 7 owns logits 0 and 2, model 3 owns logit 1
    D = np.array([[1.0, 5.0, 3.0],
                  [-1.0, 0.0, 1.0],
                  [0.0, -5.0, -4.0]])
    ids, M = PM.model_mean_descriptors(D, np.array([7, 3, 7]))
    assert ids.tolist() == [3, 7]
    np.testing.assert_allclose(M[:, 0], [5.0, 0.0, -5.0])              # model 3: its one logit
    np.testing.assert_allclose(M[:, 1], [2.0, 0.0, -2.0])              # model 7: (l0 + l2) / 2


def test_model_mean_rank_by_hand():
    M = np.array([[5.0, 2.0, 0.0],
                  [0.0, 0.0, 1.0],
                  [-5.0, -2.0, 0.0]])
    q = np.array([1.0, 0.0, -1.0])
    # distances: model 0 sqrt(16 + 0 + 16) = 5.66, model 1 sqrt(1 + 0 + 1) = 1.41, model 2 sqrt(1 + 1 + 1) = 1.73
    assert PM.model_mean_rank(q, M).tolist() == [1, 2, 0]
    assert PM.model_mean_rank(q, M, exclude=[1]).tolist() == [2, 0]
    # ties broken by the lower column
    assert PM.model_mean_rank(np.zeros(3), np.zeros((3, 2))).tolist() == [0, 1]


def test_model_mean_differs_from_chamfer():
    """A model whose logits straddle the query: its average is near the query, its best logit is not
    (and vice versa), so the paper's baseline and the Chamfer / best-logit ranking disagree."""
    q = np.array([1.0, -1.0, 0.0, 0.0])
    a = np.array([[3.0, -3.0], [-3.0, 3.0], [0.0, 0.0], [0.0, 0.0]])   # mean = 0: distance sqrt(2)
    b = np.array([[1.0, -2.0], [-1.0, 2.0], [0.5, 0.0], [0.0, 0.0]])   # best logit 0.5 away; mean far
    D = np.concatenate([a, b], axis=1)
    ids, M = PM.model_mean_descriptors(D, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(M[:, 1], [-0.5, 0.5, 0.25, 0.0])
    d_mean = np.sqrt(((M - q[:, None]) ** 2).sum(0))
    np.testing.assert_allclose(d_mean, [math.sqrt(2), math.sqrt(2.25 + 2.25 + 0.0625)])
    assert PM.model_mean_rank(q, M).tolist() == [0, 1]
    best = [np.sqrt(((D[:, [0, 1]] - q[:, None]) ** 2).sum(0)).min(),
            np.sqrt(((D[:, [2, 3]] - q[:, None]) ** 2).sum(0)).min()]
    assert best[1] < best[0]                                            # best-logit ranking: model 1 first


def test_topk_precision_and_accuracy_by_hand():
    retrieved = [["cat", "dog", "cat", "car", "cat"],   # 3 of 5 correct, first correct
                 ["dog", "dog", "cat", "x", "y"],       # 1 of 5, first wrong
                 ["car", "car"]]                        # fewer than 5 results, none correct
    concepts = ["cat", "cat", "tree"]
    assert PM.topk_precision(retrieved, concepts, 5) == pytest.approx((3 / 5 + 1 / 5 + 0) / 3)
    assert PM.topk_precision(retrieved, concepts, 1) == pytest.approx(1 / 3)
    assert PM.topk_precision(retrieved, concepts, 2) == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert PM.topk_accuracy(retrieved, concepts, 1) == pytest.approx(1 / 3)
    assert PM.topk_accuracy(retrieved, concepts, 5) == pytest.approx(2 / 3)
    # a short result list counts its missing places as wrong
    assert PM.topk_precision([["cat"]], ["cat"], 5) == pytest.approx(1 / 5)
    h = PM.hits_matrix(retrieved, concepts, 5)
    assert h.shape == (3, 5) and h.sum() == 4
