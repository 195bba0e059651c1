"""Tests of selmix.policies against independent NumPy/SciPy re-implementations, finite differences and the derived bounds."""
import math
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import chisquare

from selmix.policies import (POLICIES, uniform_pairs, softmax_pairs, greedy_pairs, partner_pairs, pair_distribution,
                             sample_pairs, play, hedge, expected_gains, regret_curve, hedge_regret_bound,
                             selmix_step_bound, synthetic_gains, mixup_move, first_order_gains, run_game)
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

@settings(max_examples=60, deadline=None)
@given(gains, st.floats(0, 100), st.booleans())
def test_softmax_pairs_matches_numpy(S, s, mask):
    P = softmax_pairs(torch.from_numpy(S), s, mask_nonpositive=mask).numpy()
    np.testing.assert_allclose(P, np_softmax_pairs(S, s, mask), rtol=1e-9, atol=1e-300)
    assert abs(P.sum() - 1) < 1e-12 and (P >= 0).all()
    if mask and (S > 0).any(): assert (P[S <= 0] == 0).all()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (4, 4), elements=st.integers(-3, 3).map(float)), st.booleans())
def test_greedy_is_the_large_s_limit(S, mask):
    "The mass off the arg-max set is at most (K²−1)·exp(−s·gap), and s = ∞ is exactly greedy."
    S = torch.from_numpy(S)
    keep = S > 0 if mask and (S > 0).any() else torch.ones_like(S, dtype=torch.bool)
    if mask and not (S > 0).any(): return              # masked with no positive gain: uniform for every s
    top = keep & (S == S[keep].max())
    gap = float(S[top][0] - (S[keep & ~top].max() if (keep & ~top).any() else -math.inf))
    for s in (1., 10., 100.):
        off = float(softmax_pairs(S, s, mask)[~top].sum())
        assert off <= 15 * math.exp(-s * gap) + 1e-15
    assert torch.equal(softmax_pairs(S, math.inf, mask), greedy_pairs(S, keep))


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
    with pytest.raises(ValueError, match='K = 0'): softmax_pairs(torch.zeros(0, 0))
    with pytest.raises(ValueError, match='K must be'): uniform_pairs(0)


@FAST
@given(arrays(np.float64, (5, 5), elements=st.integers(-3, 3).map(float)), arrays(np.bool_, (5, 5)))
def test_greedy_is_argmax_with_shared_ties(S, allowed):
    if not allowed.any(): allowed[2, 3] = True
    P = greedy_pairs(torch.from_numpy(S), torch.from_numpy(allowed)).numpy()
    top = allowed & (S == S[allowed].max())
    np.testing.assert_allclose(P, top / top.sum())


@FAST
@given(arrays(np.int64, (4, 4), elements=st.integers(0, 9)), st.sampled_from([0., 1., 3.]),
       arrays(np.bool_, (4,)))
def test_partner_pairs_matches_row_normalisation(counts, sigma, can):
    if not can.any(): can[1] = True
    P = partner_pairs(torch.from_numpy(counts).double(), can_anchor=can.tolist(), smoothing=sigma).numpy()
    K = counts.shape[0]
    for i in range(K):
        row = np.array([counts[i, j] + sigma / (K - 1) if j != i else 0. for j in range(K)])
        expect = row / row.sum() if row.sum() > 0 else np.array([0 if j == i else 1 / (K - 1) for j in range(K)])
        np.testing.assert_allclose(P[i], expect * can[i] / can.sum(), atol=1e-12)
    assert abs(P.sum() - 1) < 1e-12 and np.all(np.diag(P) == 0)


def test_partner_pairs_errors():
    C = torch.tensor([[5., 1.], [2., 5.]])
    with pytest.raises(ValueError, match='non-negative'): partner_pairs(-C)
    with pytest.raises(ValueError, match='K >= 2'): partner_pairs(torch.ones(1, 1))
    with pytest.raises(ValueError, match='smoothing'): partner_pairs(C, smoothing=-1.)
    with pytest.raises(ValueError, match='at least one'): partner_pairs(C, can_anchor=[False, False])


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


def test_pair_distribution_cases():
    G = torch.tensor([[0.3, 2.0], [-1.0, 0.5]], dtype=f64)
    assert pair_distribution('greedy', G, 10., 2).flatten().tolist() == [0, 1, 0, 0]
    assert pair_distribution('greedy', G, 10., 2, can_anchor=[False, True]).flatten().tolist() == [0, 0, 0, 1]
    assert torch.equal(pair_distribution('uniform', None, 10., 2), torch.full((2, 2), 0.25, dtype=f64))
    e = np.exp(10 * G.numpy()); e[1, 0] = 0
    np.testing.assert_allclose(pair_distribution('selmix', G, 10., 2).numpy(), e / e.sum(), rtol=1e-12)
    with pytest.raises(ValueError, match='valid: selmix, uniform, greedy, forgetting, hard_pool'): pair_distribution('random', G, 1., 2)
    with pytest.raises(ValueError, match='no class has a labeled sample'): pair_distribution('uniform', None, 1., 2, can_anchor=[0, 0])
    assert POLICIES == ('selmix', 'uniform', 'greedy', 'forgetting', 'hard_pool')


# ---------------------------------------------------------------------------------------------- sampling

def test_sample_pairs_frequencies():
    P = softmax_pairs(torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=f64), 2.)
    i, j = sample_pairs(P, 40000, torch.Generator().manual_seed(0))
    assert i.dtype == j.dtype == torch.long and len(i) == len(j) == 40000
    counts = torch.zeros(5, 5, dtype=f64).index_put_((i, j), torch.ones(len(i), dtype=f64), accumulate=True)
    assert (counts[P == 0] == 0).all()
    keep = P > 0
    assert chisquare(counts[keep].numpy(), P[keep].numpy() * len(i)).pvalue > 1e-4


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


def test_sample_pairs_trailing_zero_mass_and_bad_inputs():
    P = torch.zeros(3, 3, dtype=f64); P[0, 0] = 0.3; P[1, 2] = 0.7
    i, j = sample_pairs(P, 5000, torch.Generator().manual_seed(1))
    assert set(zip(i.tolist(), j.tolist())) == {(0, 0), (1, 2)}
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
    R = regret_curve(hedge(g, s), g)
    assert (R <= hedge_regret_bound(s, 9, torch.ones(30)) + 1e-9).all()
    np.testing.assert_allclose(hedge_regret_bound(s, 9, torch.ones(30))[-1].item(), math.log(9) / s + s * 30 / 8)


def test_hedge_bound_on_adversarial_alternation():
    T = 200
    g = torch.zeros(T, 2, 2); g[0::2, 0, 0] = 1; g[1::2, 1, 1] = 1
    for s in (0.05, 0.5, 3.):
        R = regret_curve(hedge(g, s), g)
        assert (R <= hedge_regret_bound(s, 4, torch.ones(T)) + 1e-9).all()
    with pytest.raises(ValueError, match='finite s > 0'): hedge_regret_bound(0., 4, torch.ones(T))


@FAST
@given(arrays(np.float64, (8, 3, 3), elements=st.floats(0, 1)), arrays(np.float64, (8, 3, 3), elements=st.floats(-0.3, 0.3)),
       st.floats(0.1, 200))
def test_selmix_step_bound(g, noise, s):
    g, e = torch.from_numpy(g), torch.from_numpy(g + noise)
    assert (expected_gains(play('selmix', e, s=s), g) >= selmix_step_bound(s, e, g) - 1e-9).all()


def test_play_steps_through_pair_distribution():
    E = torch.rand(3, 2, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(play('uniform', E).numpy(), np.full((3, 2, 2), 0.25))
    Cs = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(1))
    E3 = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(2))
    for t in range(3): torch.testing.assert_close(play('forgetting', E3, partners=Cs)[t], partner_pairs(Cs[t]), rtol=1e-14, atol=1e-15)
    assert torch.equal(play('greedy', E3)[1], greedy_pairs(E3[1]))
    with pytest.raises(ValueError, match='valid policies'): play('nope', E)
    with pytest.raises(ValueError, match='T×K×K'): play('selmix', E[0])
    with pytest.raises(ValueError, match='needs `partners`'): play('forgetting', E)


def test_synthetic_gains_range_and_seed():
    g, e, C = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    assert g.shape == e.shape == C.shape == (20, 5, 5)
    assert g.min().item() == pytest.approx(0) and g.max().item() == pytest.approx(1)
    np.testing.assert_allclose(C.sum((1, 2)).numpy(), 1.)
    g2, e2, _ = synthetic_gains(K=5, T=20, drift=0.2, seed=3)
    assert torch.equal(g, g2) and torch.equal(e, e2)
    with pytest.raises(ValueError, match='K ≥ 2'): synthetic_gains(K=1)


def test_mixup_move_hand_case():
    C = torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=f64)
    P = torch.tensor([[0., 1.], [0., 0.]], dtype=f64)       # pair (0, 1) only
    out = mixup_move(C, P, eta=0.5, beta=0.25)
    # row 0: 0.5·0.1 moves from column 1 to 0; row 1: 0.5·0.25·0.4 moves from column 1 to 0
    np.testing.assert_allclose(out.numpy(), [[0.35, 0.05], [0.25, 0.35]])


@FAST
@given(st.integers(0, 10_000), st.floats(0.01, 1), st.floats(0, 1))
def test_mixup_move_keeps_priors_and_positivity(seed, eta, beta):
    g = torch.Generator().manual_seed(seed)
    C = torch.rand(4, 4, generator=g, dtype=f64); C = C / C.sum()
    P = torch.rand(4, 4, generator=g, dtype=f64); P = P / P.sum()
    out = mixup_move(C, P, eta, beta)
    np.testing.assert_allclose(out.sum(1).numpy(), C.sum(1).numpy(), atol=1e-12)
    assert (out >= -1e-15).all()


@pytest.mark.parametrize('name', ['mean_recall', 'min_recall', 'h_mean'])
def test_first_order_gains_match_central_differences(name):
    g = torch.Generator().manual_seed(0)
    C = torch.rand(4, 4, generator=g, dtype=f64) + torch.eye(4, dtype=f64); C = C / C.sum()
    obj = get_objective(name, 4)
    G = first_order_gains(C, obj, 0.3, 0.2)
    h = 1e-6
    for i, j in [(0, 1), (2, 3), (3, 0)]:
        E = torch.zeros(4, 4, dtype=f64); E[i, j] = h
        fd = (obj.surrogate(mixup_move(C, E, 0.3, 0.2)) - obj.surrogate(mixup_move(C, -E, 0.3, 0.2))) / (2 * h)
        assert abs(G[i, j].item() - fd.item()) < 1e-7


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

BROKEN = [  # (policy, G, K, keyword arguments, what the message must say)
    ('selmix', torch.zeros(3, 3), 4, {}, r'`G` must be a K×K = 4×4 gain matrix .*got shape \(3, 3\)'),
    ('greedy', torch.zeros(4), 4, {}, r'`G` must be a K×K = 4×4 .*got shape \(4,\)'),
    ('uniform', torch.zeros(2, 2), 3, {}, r'`G` must be a K×K = 3×3 .*got shape \(2, 2\)'),   # even where G is ignored
    ('selmix', None, 3, {}, r"policy 'selmix' needs `G`, got None"),
    ('greedy', None, 3, {}, r"policy 'greedy' needs `G`, got None"),
    ('hard_pool', None, 3, dict(partner_counts=[-1, 0, 0]), r'`partner_counts` must be K = 3 non-negative integers.*class 0 = -1 \(negative\)'),
    ('hard_pool', None, 3, dict(partner_counts=[1, 0.5, 2]), r'`partner_counts` .*class 1 = 0.5 \(not an integer\)'),
    ('hard_pool', None, 3, dict(partner_counts=[1, 2, math.nan]), r'`partner_counts` .*class 2 = nan \(not finite\)'),
    ('hard_pool', None, 3, dict(partner_counts=[1, 2]), r'`partner_counts` must be K = 3 .*got shape \(2,\)'),
    ('hard_pool', None, 3, dict(partner_counts=[[1, 2, 3]]), r'`partner_counts` must be K = 3 .*got shape \(1, 3\)'),
    ('hard_pool', None, 3, {}, r"policy 'hard_pool' needs `partner_counts`, got None"),
    ('uniform', None, 3, dict(can_anchor=[True, False]), r'`can_anchor` must be K = 3 booleans \(one per class\), got shape \(2,\)'),
    ('greedy', torch.zeros(3, 3), 3, dict(can_anchor=np.ones((3, 3), bool)), r'`can_anchor` must be K = 3 booleans .*got shape \(3, 3\)'),
    ('forgetting', None, 3, dict(forgetting=torch.ones(2, 2)), r'`forgetting` must be K×K = 3×3 counts, got shape \(2, 2\)'),
    ('forgetting', None, 3, {}, r"policy 'forgetting' needs `forgetting`, got None"),
    ('uniform', None, 0, {}, r'num_classes must be an int >= 1, got 0'),
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

@settings(max_examples=40, deadline=None)
@given(gains, st.floats(0, 100), st.booleans())
def test_floor_zero_is_unchanged(S, s, mask):
    G = torch.from_numpy(S)
    assert torch.equal(softmax_pairs(G, s, mask, floor=0.), softmax_pairs(G, s, mask))
    np.testing.assert_allclose(softmax_pairs(G, s, mask, floor=0.).numpy(), np_softmax_pairs(S, s, mask), rtol=1e-9, atol=1e-300)

def test_floor_through_pair_distribution_and_typical_mass():
    g = torch.Generator().manual_seed(0)
    G = torch.randn(10, 10, generator=g, dtype=f64)
    P = pair_distribution('selmix', G, 10., 10, floor=1e-8)
    np.testing.assert_allclose(P.numpy(), released_P(G.numpy(), 10., 1e-8), rtol=1e-9)
    mass = P[G <= 0].sum().item()
    n = int((G <= 0).sum())
    assert n * 1e-8 / (1 + 100e-8) <= mass <= 1.1e-4     # at least n·f/(1 + K²f): the positive pairs hold ≤ 1 of the softmax
    assert torch.equal(pair_distribution('selmix', G, 10., 10), pair_distribution('selmix', G, 10., 10, floor=0.))
    P = pair_distribution('selmix', G, 10., 10, floor=1e-8, can_anchor=[True] * 9 + [False])
    assert (P[9] == 0).all() and (P[:9] > 0).all()       # a class without labeled samples stays undrawable
    np.testing.assert_allclose(softmax_pairs(G, math.inf, floor=1e-8).numpy(),
                               (greedy_pairs(G).numpy() + 1e-8) / (1 + 100e-8), rtol=1e-12)
    for bad in (-1e-8, math.nan, math.inf, True):
        with pytest.raises(ValueError, match='floor='): softmax_pairs(G, 10., floor=bad)
