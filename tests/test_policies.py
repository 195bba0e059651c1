"""Tests of selmix.policies beyond nbs/08_policies (which checks each distribution by hand, the greedy limit, sampling
frequencies, the bounds on synthetic and real gains, the toy game's derivative and the argument errors): random inputs
through every policy, Hedge and the bounds as formulas, the game replays, the remaining argument errors."""
import math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from selmix.policies import (POLICIES, softmax_pairs, greedy_pairs, partner_pairs, pair_distribution, sample_pairs, play,
                             hedge, regret_curve, hedge_regret_bound, synthetic_gains, mixup_move, first_order_gains, run_game)
from selmix.metrics import get_objective

f64 = torch.float64
FAST = settings(max_examples=40, deadline=None)
finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False)
gains = st.integers(1, 6).flatmap(lambda K: arrays(np.float64, (K, K), elements=finite))


def np_softmax_pairs(S, s, mask=False):
    z = s * S.astype(np.float64).ravel()
    if mask:
        keep = S.ravel() > 0
        if not keep.any(): return np.full(S.shape, 1 / S.size)
        z = np.where(keep, z, -np.inf)
    w = np.exp(z - z.max())
    return (w / w.sum()).reshape(S.shape)


# ---------------------------------------------------------------------------------------------- the distributions

def test_softmax_extremes_and_errors():
    S = torch.tensor([[0.1, 0.7], [0.3, -1.0]])
    np.testing.assert_allclose(softmax_pairs(S, 0., mask_nonpositive=False).numpy(), np.full((2, 2), 0.25))
    assert torch.equal(softmax_pairs(torch.tensor([[1e300, 5e299], [-1e300, 0.]], dtype=f64), 1e10),
                       torch.tensor([[1., 0.], [0., 0.]], dtype=f64))
    P = softmax_pairs(torch.tensor([[1e-300, 2e-300], [3.0, 3.0 - 1e-12]], dtype=f64), 1e14)
    assert torch.isfinite(P).all() and math.isclose(float(P.sum()), 1.) and P[1, 0] > P[1, 1] > 0
    G = torch.randn(3, 3)
    for bad in [(G, -1.), (G, float('nan')), (G[:2], 1.), (G[0], 1.), (G.masked_fill(G > 0, float('nan')), 1.)]:
        with pytest.raises(ValueError): softmax_pairs(*bad)


def test_errors_the_notebook_does_not_check():
    with pytest.raises(ValueError, match='K >= 2'): partner_pairs(torch.ones(1, 1))
    with pytest.raises(ValueError, match='finite s > 0'): hedge_regret_bound(0., 4, torch.ones(3))
    with pytest.raises(ValueError, match='T×K×K'): play('selmix', torch.rand(2, 2))
    with pytest.raises(ValueError, match='K ≥ 2'): synthetic_gains(K=1)


@FAST
@given(arrays(np.float64, (4, 4), elements=finite), arrays(np.bool_, (4,)), st.sampled_from(POLICIES))
def test_pair_distribution_drawable_rows_only(G, can, policy):
    if not can.any(): can[0] = True
    G = torch.from_numpy(G)
    P = pair_distribution(policy, G, 5., 4, can_anchor=can.tolist(), forgetting=G.abs(), partner_counts=[1, 0, 2, 3])
    assert math.isclose(float(P.sum()), 1., rel_tol=1e-12) and (P >= 0).all()
    assert (P[torch.from_numpy(~can)] == 0).all()
    if policy == 'greedy':   # the arg-max over the drawable rows
        Gm = G.masked_fill(torch.from_numpy(~can)[:, None], -math.inf)
        assert P.flatten()[Gm.flatten().argmax()] > 0


# ---------------------------------------------------------------------------------------------- sampling

@settings(max_examples=40, deadline=None)
@given(G=gains, n=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_sample_pairs_support_and_reproducibility(G, n, seed):
    P = softmax_pairs(torch.from_numpy(G), 3.)
    i, j = sample_pairs(P, n, torch.Generator().manual_seed(seed))
    K = G.shape[0]
    assert len(i) == n and ((0 <= i) & (i < K) & (0 <= j) & (j < K)).all()
    assert (P[i, j] > 0).all()
    i2, j2 = sample_pairs(P, n, torch.Generator().manual_seed(seed))
    assert torch.equal(i, i2) and torch.equal(j, j2)


def test_sample_pairs_bad_inputs():
    P = torch.zeros(3, 3, dtype=f64); P[0, 0] = 0.3; P[1, 2] = 0.7
    for bad in [(P * 2, 3), (P - 0.1, 3), (P[:2], 3), (P, -1), (P, 2.5)]:
        with pytest.raises(ValueError): sample_pairs(*bad)


# ---------------------------------------------------------------------------------------------- the online game

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
    np.testing.assert_allclose(hedge(torch.from_numpy(E), s).numpy(), np_hedge(E, s), rtol=1e-8, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (30, 3, 3), elements=st.floats(0, 1)), st.floats(0.01, 20))
def test_hedge_regret_bound_holds_for_any_gains_in_unit_interval(g, s):
    g = torch.from_numpy(g)
    R = regret_curve(hedge(g, s), g)
    assert (R <= hedge_regret_bound(s, 9, torch.ones(30)) + 1e-9).all()
    np.testing.assert_allclose(hedge_regret_bound(s, 9, torch.ones(30))[-1].item(), math.log(9) / s + s * 30 / 8)


def test_synthetic_gains_seed():
    g, e, _ = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    g2, e2, _ = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    assert torch.equal(g, g2) and torch.equal(e, e2)
    assert not torch.equal(g, synthetic_gains(K=5, T=20, drift=0.2, seed=4)[0])


def test_mixup_move_hand_case():
    C = torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=f64)
    P = torch.tensor([[0., 1.], [0., 0.]], dtype=f64)       # pair (0, 1) only
    out = mixup_move(C, P, eta=0.5, beta=0.25)
    # row 0: 0.5·0.1 moves from column 1 to 0; row 1: 0.5·0.25·0.4 moves from column 1 to 0
    np.testing.assert_allclose(out.numpy(), [[0.35, 0.05], [0.25, 0.35]])


def test_run_game_uniform_is_deterministic_replay():
    g = torch.Generator().manual_seed(1)
    C0 = torch.rand(3, 3, generator=g, dtype=f64) + 2 * torch.eye(3, dtype=f64); C0 = C0 / C0.sum()
    obj = get_objective('mean_recall', 3)
    v = run_game(C0, obj, 'uniform', T=4, hold=2, eta=0.1, beta=0.1)
    C, U = C0.clone(), torch.full((3, 3), 1 / 9, dtype=f64)
    for t in range(4):
        C = mixup_move(C, U, 0.1, 0.1)
        d = torch.diagonal(C) / C.sum(1)
        assert abs(v[t].item() - d.mean().item()) < 1e-12
    with pytest.raises(ValueError, match='valid policies'): run_game(C0, obj, 'x')
    with pytest.raises(ValueError, match='no pool'): run_game(C0, obj, 'hard_pool')


def test_run_game_hedge_and_confusion_replay():
    "`cumulative=True` plays Hedge on the summed earlier estimates; 'forgetting' plays partners ∝ the current confusions."
    g = torch.Generator().manual_seed(2)
    C0 = torch.rand(3, 3, generator=g, dtype=f64) + 2 * torch.eye(3, dtype=f64); C0 = C0 / C0.sum()
    obj = get_objective('min_recall', 3)
    for kw, P_of in ((dict(policy='selmix', cumulative=True), lambda C, cum: np_softmax_pairs(cum.numpy(), 2.)),
                     (dict(policy='forgetting'), lambda C, cum: partner_pairs(C).numpy())):
        v = run_game(C0, obj, s=2., T=6, hold=3, eta=0.2, beta=0.1, **kw)
        C, cum = C0.clone(), torch.zeros(3, 3, dtype=f64)
        for t in range(6):
            if t % 3 == 0:
                G = first_order_gains(C, obj, 0.2, 0.1); G = G / G.abs().max()
                P = torch.from_numpy(P_of(C, cum)); cum = cum + G
            C = mixup_move(C, P, 0.2, 0.1)
            assert abs(v[t].item() - obj.value(C).item()) < 1e-10, (kw, t)


# ---------------------------------------------------------------------------------------------- input validation (issue 23 item 4)

BROKEN = [  # (policy, G, K, keyword arguments, what the message must say); 08_policies checks the other messages
    ('greedy', torch.zeros(4), 4, {}, r'`G` must be a K×K = 4×4 .*got shape \(4,\)'),
    ('uniform', torch.zeros(2, 2), 3, {}, r'`G` must be a K×K = 3×3 .*got shape \(2, 2\)'),   # even where G is ignored
    ('selmix', None, 3, {}, r"policy 'selmix' needs `G`, got None"),
    ('hard_pool', None, 3, dict(partner_counts=[1, 2, math.nan]), r'`partner_counts` .*class 2 = nan \(not finite\)'),
    ('hard_pool', None, 3, dict(partner_counts=[[1, 2, 3]]), r'`partner_counts` must be K = 3 .*got shape \(1, 3\)'),
    ('hard_pool', None, 3, {}, r"policy 'hard_pool' needs `partner_counts`, got None"),
    ('greedy', torch.zeros(3, 3), 3, dict(can_anchor=np.ones((3, 3), bool)), r'`can_anchor` must be K = 3 booleans .*got shape \(3, 3\)'),
    ('forgetting', None, 3, {}, r"policy 'forgetting' needs `forgetting`, got None"),
    ('uniform', None, 2.0, {}, r'num_classes must be an int >= 1, got 2.0'),
]

@pytest.mark.parametrize('policy,G,K,kw,msg', BROKEN)
def test_pair_distribution_names_the_bad_argument(policy, G, K, kw, msg):
    with pytest.raises(ValueError, match=msg): pair_distribution(policy, G, 10., K, **kw)

def test_pair_distribution_valid_inputs_still_work():
    "Counts as a LongTensor, floats with integer values, masks as 0/1 or bools: the same P."
    want = np.array([[0., 2., 2.]] * 3) / 12
    for counts in (torch.tensor([0, 2, 2]), [0., 2., 2.], np.array([0, 2, 2])):
        np.testing.assert_allclose(pair_distribution('hard_pool', None, 0., 3, partner_counts=counts).numpy(), want, rtol=1e-12)
    P = pair_distribution('hard_pool', None, 0., 3, partner_counts=[0, 0, 0], can_anchor=torch.tensor([1, 0, 1]))
    np.testing.assert_allclose(P.numpy(), np.array([[1, 1, 1], [0, 0, 0], [1, 1, 1]]) / 6)   # empty pool: uniform over drawable pairs
    assert torch.equal(pair_distribution('uniform', None, 1., 3, can_anchor=[True, False, True]),
                       pair_distribution('uniform', None, 1., 3, can_anchor=np.array([1, 0, 1])))


# ---------------------------------------------------------------------------------------------- the released probability floor (issue 20 item 7b)
from scipy.special import softmax as sp_softmax

def released_P(G, s, floor, mask=True):
    "The released code's distribution, in numpy: joint softmax over all K² pairs, masked (not renormalised), + floor, renormalised."
    P = sp_softmax(s * G) * ((G > 0) if mask else 1.)
    return (P + floor) / np.sum(P + floor)

@settings(max_examples=60, deadline=None)
@given(gains, st.floats(0, 30), st.sampled_from([1e-8, 1e-10, 1e-3]), st.booleans())
def test_floor_matches_released_numpy(S, s, floor, mask):
    if mask and not (S > 0).any(): S = S.copy(); S.flat[0] = 1.
    P = softmax_pairs(torch.from_numpy(S), s, mask_nonpositive=mask, floor=floor).numpy()
    want = released_P(S, s, floor, mask)
    np.testing.assert_allclose(P, want, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(P[S <= 0].sum(), want[S <= 0].sum(), rtol=1e-9, atol=1e-300)   # the mass on G ≤ 0 pairs
    if mask and (S <= 0).any(): assert (P[S <= 0] > 0).all()

def test_floor_keeps_undrawable_rows_and_the_greedy_limit():
    "08_policies checks the floor's mass on the pairs with G ≤ 0; here a class without labeled samples, s = ∞ and the refused floors."
    G = torch.randn(10, 10, generator=torch.Generator().manual_seed(0), dtype=f64)
    P = pair_distribution('selmix', G, 10., 10, floor=1e-8, can_anchor=[True] * 9 + [False])
    assert (P[9] == 0).all() and (P[:9] > 0).all()       # a class without labeled samples stays undrawable
    np.testing.assert_allclose(softmax_pairs(G, math.inf, floor=1e-8).numpy(),
                               (greedy_pairs(G).numpy() + 1e-8) / (1 + 100e-8), rtol=1e-12)
    for bad in (math.nan, math.inf, True):
        with pytest.raises(ValueError, match='floor='): softmax_pairs(G, 10., floor=bad)
