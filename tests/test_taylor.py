"""Tests of selmix.taylor against NumPy, autograd of the cross entropy and finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from selmix.taylor import mixup_directions, taylor_gains, loglog_slope
from selmix.metrics import get_objective, soft_confusion

FAST = settings(max_examples=30, deadline=None)


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
