"Tests of selmix.gain: the factorised gain against per-pair autograd and the released formula."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st, HealthCheck

from selmix.gain import gain_matrix, gain_matrix_reference

f64 = torch.float64


def random_head(K, d, seed, scale=1.0, bias=True):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(K, d, generator=g, dtype=f64)
    W = scale * torch.randn(K, d, generator=g, dtype=f64)
    b = torch.randn(K, generator=g, dtype=f64) if bias else None
    return mu, W, b


def random_confusion(K, seed):
    "A plausible joint confusion matrix: mostly diagonal, long-tailed prior."
    g = torch.Generator().manual_seed(seed)
    prior = torch.linspace(1, 0.1, K, dtype=f64)
    rows = torch.eye(K, dtype=f64) * 4 + torch.rand(K, K, generator=g, dtype=f64)
    C = prior[:, None] * rows / rows.sum(1, keepdim=True)
    return C / C.sum()


def objective_Ds(K, seed):
    "Stack of D = dψ/dC̃ for every objective of selmix.metrics (multipliers updated once), plus a random D."
    g = torch.Generator().manual_seed(seed + 1)
    Ds, names = [torch.randn(K, K, generator=g, dtype=f64)], ['random']
    try:
        from selmix.metrics import OBJECTIVES, get_objective
    except ImportError:
        return torch.stack(Ds), names
    C = random_confusion(K, seed)
    for name in OBJECTIVES:
        try: obj = get_objective(name, K)
        except ValueError: continue          # e.g. head/tail objectives need enough classes
        obj.update(C)
        Ds.append(torch.as_tensor(obj.grad_unconstrained(C), dtype=f64))
        names.append(name)
    return torch.stack(Ds), names


def rel_close(a, b, rtol=1e-5, atol_frac=1e-12):
    "Elementwise rtol, with an absolute floor relative to the largest entry (for entries that cancel to ~0)."
    return torch.allclose(a, b, rtol=rtol, atol=atol_frac * float(b.abs().max()))


def test_every_objective_is_covered():
    from selmix.metrics import OBJECTIVES
    _, names = objective_Ds(10, 0)
    assert set(OBJECTIVES) <= set(names)


@pytest.mark.parametrize('K,d', [(2, 1), (2, 5), (10, 3), (10, 32), (37, 4), (37, 64)])
@pytest.mark.parametrize('bias', [True, False])
def test_exact_matches_autograd_for_every_objective(K, d, bias):
    mu, W, b = random_head(K, d, seed=K * 100 + d, bias=bias)
    Ds, names = objective_Ds(K, seed=K + d)
    G_ref = gain_matrix_reference(mu, W, b, Ds)
    for D, Gr, name in zip(Ds, G_ref, names):
        G = gain_matrix(mu, W, b, D)
        assert G.shape == (K, K) and G.dtype == f64
        assert rel_close(G, Gr), (name, (G - Gr).abs().max().item())


@pytest.mark.parametrize('K,d', [(2, 3), (10, 8), (37, 16)])
def test_official_matches_literal_formula(K, d):
    mu, W, b = random_head(K, d, seed=7 + K)
    Ds, names = objective_Ds(K, seed=3)
    G_ref = gain_matrix_reference(mu, W, b, Ds, formula='official')
    for D, Gr, name in zip(Ds, G_ref, names):
        assert rel_close(gain_matrix(mu, W, b, D, formula='official'), Gr), name


def test_exact_matches_finite_difference_of_the_sgd_step():
    "Independent of autograd: step the head by ε·(ΔW, Δb) with the analytic CE gradient and difference Σ D∘logits."
    K, d, lam = 6, 4, 0.7
    mu, W, b = random_head(K, d, seed=11)
    D = torch.randn(K, K, generator=torch.Generator().manual_seed(5), dtype=f64)
    G = gain_matrix(mu, W, b, D, lam=lam)
    f = lambda W, b: (D * (mu @ W.T + b)).sum()
    eps = 1e-4
    for i in range(K):
        for j in range(K):
            z = lam * mu[i] + (1 - lam) * mu[j]
            r = F.one_hot(torch.tensor(i), K).to(f64) - torch.softmax(W @ z + b, 0)
            fd = (f(W + eps * torch.outer(r, z), b + eps * r) - f(W, b)) / eps
            assert abs(fd - G[i, j]) < 1e-7 * (1 + abs(G[i, j]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(K=st.integers(2, 9), d=st.integers(1, 6), lam=st.floats(0., 0.99), seed=st.integers(0, 2**16))
def test_official_vs_exact_without_bias_step(K, d, lam, seed):
    """Official = exact without Δb at λ = 1; for λ < 1 they differ by (1-λ)(A_ii - A_ji), A = μμᵀD."""
    mu, W, b = random_head(K, d, seed)
    D = torch.randn(K, K, generator=torch.Generator().manual_seed(seed + 1), dtype=f64)
    off1, ex1 = gain_matrix(mu, W, b, D, lam=1., formula='official'), gain_matrix(mu, W, b, D, lam=1., bias_grad=False)
    assert torch.allclose(off1, ex1, rtol=1e-9, atol=1e-9)
    off, ex = gain_matrix(mu, W, b, D, lam=lam, formula='official'), gain_matrix(mu, W, b, D, lam=lam, bias_grad=False)
    A = mu @ mu.T @ D
    expected = (1 - lam) * (A.diagonal()[:, None] - A.T)
    assert torch.allclose(off - ex, expected, rtol=1e-7, atol=1e-7)
    assert (off - ex).abs().max() > 1e-6 * (1 + A.abs().max())   # random A is never constant down columns


def test_bias_step_changes_the_gain():
    mu, W, b = random_head(5, 3, seed=2)
    D = torch.randn(5, 5, generator=torch.Generator().manual_seed(2), dtype=f64)
    assert (gain_matrix(mu, W, b, D) - gain_matrix(mu, W, b, D, bias_grad=False)).abs().max() > 1e-3
    # official ignores bias_grad
    assert torch.equal(gain_matrix(mu, W, b, D, formula='official'), gain_matrix(mu, W, b, D, formula='official', bias_grad=False))


@pytest.mark.parametrize('scale', [30., 300., 3000., 3e4])
@pytest.mark.parametrize('formula', ['exact', 'official'])
def test_extreme_logits(scale, formula):
    K, d = 9, 4
    mu, W, b = random_head(K, d, seed=int(scale) % 97, scale=scale)
    D = torch.randn(K, K, generator=torch.Generator().manual_seed(1), dtype=f64)
    G, G_ref = gain_matrix(mu, W, b, D, formula=formula), gain_matrix_reference(mu, W, b, D, formula=formula)
    assert torch.isfinite(G).all()
    assert rel_close(G, G_ref, atol_frac=1e-10)


def test_extreme_bias_only():
    "A huge bias alone saturates the softmax; the gain must stay finite and right."
    mu, W, b = random_head(6, 3, seed=4)
    b = b * 1e4
    D = torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=f64)
    assert rel_close(gain_matrix(mu, W, b, D), gain_matrix_reference(mu, W, b, D), atol_frac=1e-10)


def test_dtypes_chunks_and_devices():
    mu, W, b = random_head(12, 5, seed=9)
    D = torch.randn(12, 12, generator=torch.Generator().manual_seed(9), dtype=f64)
    G = gain_matrix(mu, W, b, D)
    G32 = gain_matrix(mu.float(), W.float(), b.float(), D.float())
    assert G32.dtype == f64 and torch.allclose(G32, G, rtol=1e-4, atol=1e-4 * float(G.abs().max()))
    for c in (1, 5, 12, 100):
        assert torch.allclose(gain_matrix(mu, W, b, D, chunk_size=c), G, rtol=1e-12, atol=1e-12)
    if torch.cuda.is_available():
        Gc = gain_matrix(mu.cuda(), W.cuda(), b.cuda(), D)
        assert Gc.device.type == 'cuda' and torch.allclose(Gc.cpu(), G, rtol=1e-10, atol=1e-10)


def test_bad_inputs():
    mu, W, b = random_head(4, 3, seed=0)
    D = torch.randn(4, 4, dtype=f64)
    bad = [dict(weight=W[:, :2]), dict(weight=W[:3]), dict(means=mu[None]), dict(bias=b[:3]), dict(D=D[:, :3]),
           dict(D=torch.full_like(D, float('nan'))), dict(means=mu * float('inf')), dict(lam=-0.1), dict(lam=1.2),
           dict(formula='paper')]
    for kw in bad:
        args = dict(means=mu, weight=W, bias=b, D=D) | kw
        with pytest.raises(ValueError): gain_matrix(**args)
    with pytest.raises(ValueError, match='NaN'): gain_matrix(mu, W, b, D.masked_fill(D > 0, float('nan')))


def test_accepts_parameters_without_building_a_graph():
    head = torch.nn.Linear(4, 5)
    mu = torch.randn(5, 4)
    D = torch.randn(5, 5, dtype=f64)
    G = gain_matrix(mu, head.weight, head.bias, D)
    assert not G.requires_grad
    assert rel_close(G, gain_matrix_reference(mu, head.weight.detach(), head.bias.detach(), D))


# ---------------------------------------------------------------- degenerate and extreme inputs
def test_no_classes_is_a_clear_error():
    with pytest.raises(ValueError, match='K = 0'): gain_matrix(torch.zeros(0, 4), torch.zeros(0, 4), None, torch.zeros(0, 0))
    with pytest.raises(ValueError, match='K = 0'): gain_matrix(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 0))


@pytest.mark.parametrize('what', ['means', 'weight', 'bias', 'D'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_inputs_are_named(what, bad):
    mu, W, b = random_head(4, 3, 0)
    args = dict(means=mu, weight=W, bias=b, D=torch.randn(4, 4, dtype=f64))
    args[what] = args[what].clone(); args[what].view(-1)[1] = bad
    with pytest.raises(ValueError, match=f'`{what}` contains NaN or inf'): gain_matrix(**args)


@pytest.mark.parametrize('e', [300, 515, 520])
@pytest.mark.parametrize('bias', [False, True])
def test_huge_means_match_autograd_at_moderate_scale(e, bias):
    "μ → 2^e μ, W → 2^-e W keeps the logits; the Gram part grows by 4^e, which D → 4^-e·2^40 D undoes exactly."
    mu, W, b = random_head(6, 4, 3, bias=bias)
    D = torch.randn(6, 6, generator=torch.Generator().manual_seed(9), dtype=f64)
    c = 2.0 ** e
    D_small = D * 2.0 ** 40 / c / c
    if e > 512: assert not torch.isfinite((mu * c) @ (mu * c).T).all()     # the plain Gram product overflows here
    G = gain_matrix(mu * c, W / c, b, D_small)
    ref = gain_matrix_reference(mu, W, b, D * 2.0 ** 40, bias_grad=False)    # the bias part is ~4^-e of it here
    assert torch.isfinite(G).all()
    torch.testing.assert_close(G, ref, rtol=0, atol=1e-9 * float(ref.abs().max()))


def test_moderate_means_are_untouched_by_the_rescaling():
    "Below the rescaling threshold the result is the plain formula (and equals autograd)."
    mu, W, b = random_head(5, 3, 1)
    D = torch.randn(5, 5, generator=torch.Generator().manual_seed(2), dtype=f64)
    for c in (1.0, 1e50, 2.0 ** 255):
        torch.testing.assert_close(gain_matrix(mu * c, W / c, b, D * (1 / c) ** 2),
                                   gain_matrix_reference(mu, W, b, D, bias_grad=False)
                                   + (gain_matrix_reference(mu, W, b, D * (1 / c) ** 2)
                                      - gain_matrix_reference(mu, W, b, D * (1 / c) ** 2, bias_grad=False)),
                                   rtol=1e-9, atol=1e-9)


def test_gains_that_float64_cannot_hold_raise():
    mu, W, b = random_head(4, 3, 0)
    D = torch.randn(4, 4, dtype=f64)
    with pytest.raises(OverflowError, match='gains overflow float64'): gain_matrix(mu * 1e160, W / 1e160, b, D)
    with pytest.raises(OverflowError, match='logits'): gain_matrix(mu * 1e160, W * 1e160, b, D)
    G = gain_matrix(mu * 1e150, W / 1e150, b, D)      # 1e300-sized gains: representable, so returned (and finite)
    assert torch.isfinite(G).all() and float(G.abs().max()) > 1e290
