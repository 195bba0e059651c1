"""Tests of selmix.valuation (and the λ schedules of selmix.mixup) beyond nbs/09_valuation and nbs/05a_mixup, which check
every definition by hand or against a loop: frozen parameters and BatchNorm in GraNd, exact η·N rounding, singular
covariances and the options of the regularisers, custom schedules, the warm-up's random state, the remaining errors."""
import copy, math
from fractions import Fraction

import pytest, torch
import torch.nn as nn, torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from selmix.data import Augment, Split
from selmix.models import SmallCNN
from selmix.valuation import collect_forgetting, forgetting_counts, grand, hardest, mixup_regularisers, theta_moments
from selmix.pretrain import LAM_SCHEDULES, lam_schedule   # the note's λ schedules


# ---------------------------------------------------------------- forgetting events

def test_forgetting_bad_inputs():
    with pytest.raises(ValueError, match='N = len'): forgetting_counts(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2), 3)


# ---------------------------------------------------------------- EL2N, GraNd, hard pools

def _loop_grand(m, x, y):
    out = []
    for xi, yi in zip(x, y):
        gs = torch.autograd.grad(F.cross_entropy(m(xi[None]), yi[None]), [p for p in m.parameters() if p.requires_grad])
        out.append(torch.sqrt(sum((g.double() ** 2).sum() for g in gs)))
    return torch.stack(out).float()


def test_grand_matches_per_sample_autograd():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 3))
    x, y = torch.randn(9, 4), torch.randint(0, 3, (9,))
    torch.testing.assert_close(grand(net, x, y, batch_size=4), _loop_grand(net, x, y), rtol=1e-5, atol=1e-6)
    net[0].weight.requires_grad_(False)                               # frozen parameters are not scored
    torch.testing.assert_close(grand(net, x, y), _loop_grand(net, x, y), rtol=1e-5, atol=1e-6)


def test_grand_on_a_cnn_with_batchnorm_uses_eval_mode_and_restores_it():
    torch.manual_seed(0)
    cnn = SmallCNN(3, 1, width=4)
    cnn.train(); cnn(torch.randn(16, 1, 8, 8))                        # move BN statistics away from their init
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,))
    stats = copy.deepcopy(cnn.state_dict())
    g = grand(cnn, x, y)
    assert cnn.training
    ref = copy.deepcopy(cnn).eval()
    torch.testing.assert_close(g, _loop_grand(ref, x, y), rtol=1e-4, atol=1e-6)
    assert all(torch.equal(v, stats[k]) for k, v in cnn.state_dict().items())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 100))
def test_hardest_picks_the_top_ceil_eta_n(values, pct):
    eta = pct / 100
    s = torch.tensor(values, dtype=torch.float32)
    m = hardest(s, eta)
    k = math.ceil(Fraction(pct, 100) * len(values))                   # exact arithmetic
    assert int(m.sum()) == k
    if k < len(values): assert s[m].min() >= s[~m].max()
    # ties go to the smaller index: among equal scores at the cut, selected indices precede unselected ones
    cut = s[m].min()
    sel, uns = torch.where(m & (s == cut))[0], torch.where(~m & (s == cut))[0]
    if len(uns): assert sel.max() < uns.min()


def test_hardest_rejects_bad_eta():
    for bad in (1.01, float('nan'), None):   # 09_valuation checks 0, 1.5, -0.1, True and '0.5'
        with pytest.raises(ValueError, match=r'\(0, 1\]'): hardest(torch.rand(5), bad)
    with pytest.raises(ValueError, match='NaN'): hardest(torch.tensor([0.1, float('nan')]), 0.5)


# ---------------------------------------------------------------- Carratino et al. regularisers

def _enum(X, Yd, i, thetas):
    "Exact (δ, ε) over equally likely θ values and every partner j, with the expected mix point."
    mt = sum(thetas) / len(thetas)
    xt, yt = mt * X[i] + (1 - mt) * X.mean(0), mt * Yd[i] + (1 - mt) * Yd.mean(0)
    xs = torch.cat([t * X[i] + (1 - t) * X for t in thetas]); ys = torch.cat([t * Yd[i] + (1 - t) * Yd for t in thetas])
    return xt, yt, xs - xt, ys - yt, xs, ys


@pytest.mark.parametrize('n,d', [(25, 3), (6, 10)])          # (6, 10): Σxx is singular, pseudo-inverses needed
def test_r1_plus_r3_is_the_jacobian_part_of_the_expansion(n, d):
    torch.manual_seed(n)
    K, thetas = 4, (0.6, 0.9)
    X, Y = torch.randn(n, d, dtype=torch.float64), torch.randint(0, K, (n,))
    W, c = torch.randn(K, d, dtype=torch.float64), torch.randn(K, dtype=torch.float64)
    lin = lambda x: x @ W.T + c
    r = mixup_regularisers(lin, X, Y, (0.75, 0.0225), chunk=4)
    assert torch.allclose(r['R2'], torch.zeros(n, dtype=torch.float64), atol=1e-12)
    assert (r['R1'] >= -1e-10).all() and (r['R3'] <= 1e-10).all()
    Yd = F.one_hot(Y, K).double()
    for i in range(n):
        xt, yt, dl, ep, *_ = _enum(X, Yd, i, thetas)
        S = lin(xt).softmax(-1); H = torch.diag(S) - torch.outer(S, S)
        Wd = dl @ W.T
        direct = (0.5 * ((Wd @ H) * Wd).sum(1) - (ep * Wd).sum(1)).mean()
        torch.testing.assert_close(r['R1'][i] + r['R3'][i], direct, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(r['loss'][i], -(yt * lin(xt).log_softmax(-1)).sum())
        Q = ep.T @ dl / len(dl) @ torch.linalg.pinv(dl.T @ dl / len(dl), hermitian=True) @ dl.T @ ep / len(dl)
        torch.testing.assert_close(r['R3_note'][i], -0.5 * (Q * H).sum(), rtol=1e-6, atol=1e-9)


def test_mixup_regularisers_options():
    torch.manual_seed(4)
    n, d, K = 12, 3, 3
    X, Y = torch.randn(n, d, dtype=torch.float64), torch.randint(0, K, (n,))
    W = torch.randn(K, d, dtype=torch.float64)
    lin = lambda x: x @ W.T
    th = theta_moments(lam=(0.6, 1.0))
    base = mixup_regularisers(lin, X, Y, th)
    same = mixup_regularisers(lin, X, F.one_hot(Y, K).double(), th, partners=(X, Y), idx=[2, 7])
    for k in ('R1', 'R3', 'loss'): torch.testing.assert_close(same[k], base[k][[2, 7]])
    nolab = mixup_regularisers(lin, X, Y, th, mix_labels=False)      # SelMix: ε = 0
    assert torch.equal(nolab['R3'], torch.zeros(n, dtype=torch.float64))
    m, v = th; a = X - X.mean(0); Sxx = a.T @ a / n
    for i in (0, 5):
        xt = m * X[i] + (1 - m) * X.mean(0)
        S = lin(xt).softmax(-1); H = torch.diag(S) - torch.outer(S, S)
        Sig = v * torch.outer(a[i], a[i]) + (v + (1 - m) ** 2) * Sxx
        torch.testing.assert_close(nolab['R1'][i], 0.5 * (Sig * (W.T @ H @ W)).sum())
        torch.testing.assert_close(nolab['loss'][i], -lin(xt).log_softmax(-1)[Y[i]])


# ---------------------------------------------------------------- λ schedules

def test_uniform_schedule_reproduces_the_pipeline_draw():
    for a, b in [(0.6, 1.0), (0.5, 0.7)]:
        g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
        sch = lam_schedule('uniform', a=a, b=b) if (a, b) != (0.6, 1.0) else lam_schedule('uniform')
        for step in (0, 17):
            got = sch.sample(step, 50, 64, g1)
            assert torch.equal(got, torch.empty(64, dtype=torch.float64).uniform_(a, b, generator=g2).float())
            assert got.dtype == torch.float32 and a <= float(got.min()) and float(got.max()) <= b
        assert sch.mean(3, 50) == pytest.approx((a + b) / 2)


@pytest.mark.parametrize('name,kw', [('sine', {}), ('sine', dict(zeta=0.3)), ('tanh', {}), ('tanh', dict(zeta=6.0)),
                                     ('tanh', dict(start=0.9, end=0.6))])
def test_scheduled_lam_endpoints_and_monotone(name, kw):
    sch = lam_schedule(name, **kw)
    start, end = kw.get('start', 1.0), kw.get('end', 0.5)
    for total in (2, 7, 1000):
        vals = [sch.mean(s, total) for s in range(total)]
        assert vals[0] == pytest.approx(start, abs=1e-12) and vals[-1] == pytest.approx(end, abs=1e-12)
        assert all(b <= a + 1e-15 for a, b in zip(vals, vals[1:]))
        assert all(end - 1e-12 <= v <= start + 1e-12 for v in vals)
    s = sch.sample(3, 7, 5, torch.Generator().manual_seed(0))
    assert s.shape == (5,) and s.dtype == torch.float32 and torch.allclose(s, torch.full((5,), sch.mean(3, 7)))


def test_schedule_formulas_at_midpoint():
    assert lam_schedule('sine', zeta=0.5).mean(2, 5) == pytest.approx(1 - 0.5 * math.sin(math.pi / 8) / math.sin(math.pi / 4))
    assert lam_schedule('tanh', zeta=2.0).mean(2, 5) == pytest.approx(1 - 0.5 * math.tanh(1.0) / math.tanh(2.0))
    assert lam_schedule('tanh', zeta=8.0).mean(2, 5) < lam_schedule('tanh', zeta=1.0).mean(2, 5)   # larger ζ: hard sooner
    assert lam_schedule('constant', c=0.7).mean(0, 1) == 0.7 and lam_schedule('constant').mean(9, 10) == 0.8
    assert lam_schedule('sine').mean(0, 1) == pytest.approx(0.5)     # a single step is the last step


def test_schedule_errors_name_the_valid_choices():
    "05a_mixup checks an unknown name, a sine ζ > 1, a parameter of another schedule and a step past the end."
    assert LAM_SCHEDULES == ('constant', 'uniform', 'sine', 'tanh')
    with pytest.raises(ValueError, match='takes c'): lam_schedule('constant', zeta=1.0)
    with pytest.raises(ValueError, match='a <= b'): lam_schedule('uniform', a=0.9, b=0.6)
    with pytest.raises(ValueError, match='zeta'): lam_schedule('tanh', zeta=0.0)
    with pytest.raises(ValueError, match='total'): lam_schedule('uniform').sample(0, 0, 3)


# ---------------------------------------------------------------- warm-up collection

@pytest.fixture(scope='module')
def tiny():
    g = torch.Generator().manual_seed(0)
    split = Split(x=torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g),
                  y=torch.randint(0, 4, (64,), generator=g), idx=torch.arange(64))
    torch.manual_seed(0)
    return split, SmallCNN(4, 1, width=4)


def test_collect_forgetting_counts_and_leaves_model_and_rng_alone(tiny):
    split, model = tiny
    before = copy.deepcopy(model.state_dict())
    aug, ev = Augment([0.5], [0.25], weak=True, flip=False), Augment([0.5], [0.25])
    rng = torch.get_rng_state()
    tr = collect_forgetting(model, split, aug, steps=40, lr=0.2, batch_size=16, every=4, seed=3, prepare=ev)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert tr.evaluations == 10 and tr.num_samples == 64 and tr.num_classes == 4
    assert int(tr.matrix.sum()) == int(tr.per_sample.sum()) > 0 and not tr.matrix.diag().any()
    again = collect_forgetting(model, split, aug, steps=40, lr=0.2, batch_size=16, every=4, seed=3, prepare=ev)
    assert torch.equal(again.per_sample, tr.per_sample) and torch.equal(again.matrix, tr.matrix)
    other = collect_forgetting(model, split, aug, steps=40, lr=0.2, batch_size=16, every=4, seed=4, prepare=ev)
    assert not torch.equal(other.per_sample, tr.per_sample)
    assert collect_forgetting(model, split, aug, steps=3, every=5).evaluations == 0


def test_collect_forgetting_refuses_bad_input(tiny):
    split, model = tiny
    f = lambda x: x.float() / 255
    with pytest.raises(ValueError, match='every'): collect_forgetting(model, split, f, 5, every=0)
    with pytest.raises(ValueError, match='lr'): collect_forgetting(model, split, f, 5, lr=0)
