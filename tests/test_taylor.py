"""Tests of selmix.taylor against NumPy/sklearn, autograd of the cross entropy and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion

from selmix.taylor import soft_confusion, mixup_directions, taylor_gains, loglog_slope
from selmix.metrics import get_objective

FAST = settings(max_examples=30, deadline=None)


@FAST
@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(1, 40))
def test_soft_confusion_matches_numpy_loop(seed, K, N):
    g = torch.Generator().manual_seed(seed)
    lg, y = torch.randn(N, K, generator=g, dtype=torch.float64), torch.randint(0, K, (N,), generator=g)
    p = np.exp(lg.numpy()); p /= p.sum(1, keepdims=True)
    expect = np.zeros((K, K))
    for n in range(N): expect[y[n]] += p[n] / N
    np.testing.assert_allclose(soft_confusion(lg, y, K).numpy(), expect, atol=1e-12)


def test_soft_confusion_confident_limit_is_sklearn():
    g = torch.Generator().manual_seed(1)
    lg, y = torch.randn(60, 4, generator=g), torch.randint(0, 4, (60,), generator=g)
    hard = sk_confusion(y.numpy(), lg.argmax(1).numpy(), labels=range(4)) / 60
    np.testing.assert_allclose(soft_confusion(1e4 * lg, y, 4).numpy(), hard, atol=1e-9)


def test_soft_confusion_errors():
    with pytest.raises(ValueError, match='N×K'): soft_confusion(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match='one label per row'): soft_confusion(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r'\[0, 2\)'): soft_confusion(torch.zeros(2, 2), torch.tensor([0, 2]), 2)


@FAST
@given(st.integers(0, 10_000), st.floats(0, 1))
def test_mixup_directions_are_negative_ce_gradients(seed, lam):
    g = torch.Generator().manual_seed(seed)
    K, d = 3, 4
    mu, W, b = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((K, d), (K, d), (K,)))
    dW, db = mixup_directions(mu, W, b, lam)
    for i in range(K):
        for j in range(K):
            Wr, br = W.clone().requires_grad_(), b.clone().requires_grad_()
            z = lam * mu[i] + (1 - lam) * mu[j]
            gW, gb = torch.autograd.grad(F.cross_entropy((Wr @ z + br)[None], torch.tensor([i])), [Wr, br])
            np.testing.assert_allclose(dW[i, j].numpy(), -gW.numpy(), atol=1e-12)
            np.testing.assert_allclose(db[i, j].numpy(), -gb.numpy(), atol=1e-12)


def test_mixup_directions_errors():
    with pytest.raises(ValueError, match='weight must be'): mixup_directions(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match='lam'): mixup_directions(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), lam=1.5)


@pytest.mark.parametrize('name', ['mean_recall', 'h_mean', 'g_mean'])
def test_taylor_gains_match_central_differences(name):
    g = torch.Generator().manual_seed(0)
    K, d, N = 3, 5, 90
    X, y = torch.randn(N, d, generator=g, dtype=torch.float64), torch.arange(N) % K
    X = X + 1.5 * F.one_hot(y, d).double()
    W, b = 0.5 * torch.randn(K, d, generator=g, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    obj = get_objective(name, K)
    psi = lambda W_, b_: obj.value(soft_confusion(X @ W_.T + b_, y, K))
    mu = torch.stack([X[y == k].mean(0) for k in range(K)])
    dW, db = mixup_directions(mu, W, b)
    G = taylor_gains(psi, W, b, dW, db)
    h = 1e-5
    for i, j in [(0, 1), (2, 0), (1, 1)]:
        fd = (psi(W + h * dW[i, j], b + h * db[i, j]) - psi(W - h * dW[i, j], b - h * db[i, j])) / (2 * h)
        assert abs(G[i, j].item() - fd.item()) < 1e-8


@FAST
@given(st.floats(0.5, 3), st.floats(0.1, 10))
def test_loglog_slope_recovers_power(p, c):
    x = np.logspace(-3, 0, 9)
    assert abs(loglog_slope(x, c * x ** p) - p) < 1e-9


def test_loglog_slope_errors():
    with pytest.raises(ValueError, match='positive'): loglog_slope([1, 2], [0, 1])
