"""Tests of selmix.policies against independent NumPy re-implementations, finite differences and the derived bounds."""
import math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from selmix.policies import (POLICIES, uniform_pairs, softmax_pairs, greedy_pairs, confusion_pairs, play,
                             expected_gains, regret_curve, hedge_regret_bound, selmix_step_bound, synthetic_gains,
                             mixup_move, first_order_gains, run_game)
from selmix.metrics import get_objective

FAST = settings(max_examples=40, deadline=None)
finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False)


def np_softmax_pairs(S, s, mask=False):
    z = s * S.astype(np.float64).ravel()
    if mask:
        keep = S.ravel() > 0
        if not keep.any(): return np.full(S.shape, 1 / S.size)
        z = np.where(keep, z, -np.inf)
    w = np.exp(z - z.max())
    return (w / w.sum()).reshape(S.shape)


@FAST
@given(arrays(np.float64, (4, 4), elements=finite), st.floats(0, 20), st.booleans())
def test_softmax_pairs_matches_numpy(S, s, mask):
    P = softmax_pairs(torch.from_numpy(S), s, mask_nonpositive=mask).numpy()
    np.testing.assert_allclose(P, np_softmax_pairs(S, s, mask), rtol=1e-9, atol=1e-12)
    assert abs(P.sum() - 1) < 1e-9


@FAST
@given(arrays(np.float64, (3, 3), elements=finite), st.floats(0, 30))
def test_masked_softmax_agrees_with_gain_module(S, s):
    from selmix.gain import selmix_distribution   # written independently in 02_gain
    np.testing.assert_allclose(softmax_pairs(torch.from_numpy(S), s, True).numpy(),
                               selmix_distribution(torch.from_numpy(S), s).numpy(), atol=1e-9)


def test_softmax_limits_and_errors():
    S = torch.tensor([[0.1, 0.7], [0.3, -1.0]])
    np.testing.assert_allclose(softmax_pairs(S, 0.).numpy(), np.full((2, 2), 0.25))
    np.testing.assert_allclose(softmax_pairs(S, 500.).numpy(), greedy_pairs(S).numpy(), atol=1e-12)
    with pytest.raises(ValueError, match='inverse temperature'): softmax_pairs(S, -1)
    with pytest.raises(ValueError, match='inverse temperature'): softmax_pairs(S, math.inf)
    with pytest.raises(ValueError, match='square'): softmax_pairs(torch.zeros(2, 3), 1.)
    with pytest.raises(ValueError, match='K must be'): uniform_pairs(1)


@FAST
@given(arrays(np.float64, (5, 5), elements=st.integers(-3, 3).map(float)))
def test_greedy_is_argmax_with_shared_ties(S):
    P = greedy_pairs(torch.from_numpy(S)).numpy()
    top = S == S.max()
    np.testing.assert_allclose(P, top / top.sum())


@FAST
@given(arrays(np.int64, (4, 4), elements=st.integers(0, 9)))
def test_confusion_pairs_matches_row_normalisation(counts):
    P = confusion_pairs(torch.from_numpy(counts).double()).numpy()
    K = counts.shape[0]
    for i in range(K):
        off = [counts[i, j] if j != i else 0 for j in range(K)]
        expect = (np.array(off) / sum(off)) if sum(off) > 0 else np.array([0 if j == i else 1 / (K - 1) for j in range(K)])
        np.testing.assert_allclose(P[i], expect / K, atol=1e-12)
    assert abs(P.sum() - 1) < 1e-12 and np.all(np.diag(P) == 0)


def test_confusion_pairs_anchor_and_errors():
    C = torch.tensor([[5., 1.], [2., 5.]])
    np.testing.assert_allclose(confusion_pairs(C, torch.tensor([0.25, 0.75])).numpy(), [[0, 0.25], [0.75, 0]])
    with pytest.raises(ValueError, match='non-negative'): confusion_pairs(-C)
    with pytest.raises(ValueError, match='anchor'): confusion_pairs(C, torch.tensor([0.5, 0.6]))


def np_hedge(E, s):
    "Multiplicative weights written as a loop: w ← w·exp(s·ĝ_t) after acting."
    T = E.shape[0]; w = np.ones(E[0].size); out = []
    for t in range(T):
        out.append((w / w.sum()).reshape(E[0].shape))
        w = w * np.exp(s * E[t].ravel()); w = w / w.max()
    return np.stack(out)


@FAST
@given(arrays(np.float64, (12, 3, 3), elements=st.floats(0, 1)), st.floats(0.01, 5))
def test_hedge_matches_multiplicative_weights(E, s):
    np.testing.assert_allclose(play('hedge', torch.from_numpy(E), s=s).numpy(), np_hedge(E, s), rtol=1e-8, atol=1e-12)


@FAST
@given(arrays(np.float64, (10, 2, 2), elements=st.floats(0, 1)), arrays(np.float64, (10, 2, 2), elements=st.floats(0, 1)))
def test_regret_curve_brute_force(Pr, g):
    Pr = Pr + 1e-3; Pr = Pr / Pr.sum((1, 2), keepdims=True)
    R = regret_curve(torch.from_numpy(Pr), torch.from_numpy(g)).numpy()
    for T in range(1, 11):
        best = max(g[:T, i, j].sum() for i in range(2) for j in range(2))
        earned = sum((Pr[t] * g[t]).sum() for t in range(T))
        assert abs(R[T - 1] - (best - earned)) < 1e-9


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (30, 3, 3), elements=st.floats(0, 1)), st.floats(0.01, 20))
def test_hedge_regret_bound_holds_for_any_gains_in_unit_interval(g, s):
    g = torch.from_numpy(g)
    R = regret_curve(play('hedge', g, s=s), g)
    assert (R <= hedge_regret_bound(s, 9, torch.ones(30)) + 1e-9).all()
    np.testing.assert_allclose(hedge_regret_bound(s, 9, torch.ones(30))[-1].item(), math.log(9) / s + s * 30 / 8)


def test_hedge_bound_on_adversarial_alternation():
    T = 200
    g = torch.zeros(T, 2, 2); g[0::2, 0, 0] = 1; g[1::2, 1, 1] = 1
    for s in (0.05, 0.5, 3.):
        R = regret_curve(play('hedge', g, s=s), g)
        assert (R <= hedge_regret_bound(s, 4, torch.ones(T)) + 1e-9).all()


@FAST
@given(arrays(np.float64, (8, 3, 3), elements=st.floats(0, 1)), arrays(np.float64, (8, 3, 3), elements=st.floats(-0.3, 0.3)),
       st.floats(0.1, 200))
def test_selmix_step_bound(g, noise, s):
    g, e = torch.from_numpy(g), torch.from_numpy(g + noise)
    assert (expected_gains(play('selmix', e, s=s), g) >= selmix_step_bound(s, e, g) - 1e-9).all()


def test_play_errors_and_uniform():
    E = torch.rand(3, 2, 2)
    np.testing.assert_allclose(play('uniform', E).numpy(), np.full((3, 2, 2), 0.25))
    with pytest.raises(ValueError, match='valid policies'): play('nope', E)
    with pytest.raises(ValueError, match='T×K×K'): play('selmix', E[0])
    with pytest.raises(ValueError, match='needs confusions'): play('confusion', E)
    assert set(POLICIES) == {'selmix', 'hedge', 'uniform', 'greedy', 'confusion'}


def test_synthetic_gains_range_and_seed():
    g, e, C = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    assert g.shape == e.shape == C.shape == (20, 5, 5)
    assert g.min().item() == pytest.approx(0) and g.max().item() == pytest.approx(1)
    np.testing.assert_allclose(C.sum((1, 2)).numpy(), 1.)
    g2, e2, _ = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    assert torch.equal(g, g2) and torch.equal(e, e2)
    with pytest.raises(ValueError, match='K ≥ 2'): synthetic_gains(K=1)


def test_mixup_move_hand_case():
    C = torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=torch.float64)
    P = torch.tensor([[0., 1.], [0., 0.]], dtype=torch.float64)       # pair (0, 1) only
    out = mixup_move(C, P, eta=0.5, beta=0.25)
    # row 0: 0.5·0.1 moves from column 1 to 0; row 1: 0.5·0.25·0.4 moves from column 1 to 0
    np.testing.assert_allclose(out.numpy(), [[0.35, 0.05], [0.25, 0.35]])


@FAST
@given(st.integers(0, 10_000), st.floats(0.01, 1), st.floats(0, 1))
def test_mixup_move_keeps_priors_and_positivity(seed, eta, beta):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(4, 4, generator=g, dtype=torch.float64); C = C / C.sum()
    P = torch.rand(4, 4, generator=g, dtype=torch.float64); P = P / P.sum()
    out = mixup_move(C, P, eta, beta)
    np.testing.assert_allclose(out.sum(1).numpy(), C.sum(1).numpy(), atol=1e-12)
    assert (out >= -1e-15).all()


@pytest.mark.parametrize('name', ['mean_recall', 'min_recall', 'h_mean'])
def test_first_order_gains_match_central_differences(name):
    g = torch.Generator().manual_seed(0)
    C = torch.rand(4, 4, generator=g, dtype=torch.float64) + torch.eye(4, dtype=torch.float64); C = C / C.sum()
    obj = get_objective(name, 4)
    G = first_order_gains(C, obj, 0.3, 0.2)
    h = 1e-6
    for i, j in [(0, 1), (2, 3), (3, 0)]:
        E = torch.zeros(4, 4, dtype=torch.float64); E[i, j] = h
        fd = (obj.surrogate(mixup_move(C, E, 0.3, 0.2)) - obj.surrogate(mixup_move(C, -E, 0.3, 0.2))) / (2 * h)
        assert abs(G[i, j].item() - fd.item()) < 1e-7


def test_run_game_uniform_is_deterministic_replay():
    g = torch.Generator().manual_seed(1)
    C0 = torch.rand(3, 3, generator=g, dtype=torch.float64) + 2 * torch.eye(3, dtype=torch.float64); C0 = C0 / C0.sum()
    obj = get_objective('mean_recall', 3)
    v = run_game(C0, obj, 'uniform', T=4, hold=2, eta=0.1, beta=0.1)
    C, U = C0.clone(), torch.full((3, 3), 1 / 9, dtype=torch.float64)
    for t in range(4):
        C = mixup_move(C, U, 0.1, 0.1)
        d = torch.diagonal(C) / C.sum(1)
        assert abs(v[t].item() - d.mean().item()) < 1e-12
    with pytest.raises(ValueError, match='valid policies'): run_game(C0, obj, 'x')
