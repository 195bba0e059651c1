"Tests of selmix.gain beyond nbs/02_gain (autograd, finite differences, float32, chunks, bad inputs and huge features are checked there): the two formulas' closed-form gap, extreme heads, every input's non-finite message."
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from selmix.gain import gain_matrix, gain_matrix_reference

f64 = torch.float64


def random_head(K, d, seed, scale=1.0, bias=True):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(K, d, generator=g, dtype=f64)
    W = scale * torch.randn(K, d, generator=g, dtype=f64)
    b = torch.randn(K, generator=g, dtype=f64) if bias else None
    return mu, W, b


def rel_close(a, b, rtol=1e-5, atol_frac=1e-12):
    "Elementwise rtol, with an absolute floor relative to the largest entry (for entries that cancel to ~0)."
    return torch.allclose(a, b, rtol=rtol, atol=atol_frac * float(b.abs().max()))


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


def test_bad_inputs_the_notebook_does_not_check():
    mu, W, b = random_head(4, 3, seed=0)
    D = torch.randn(4, 4, dtype=f64)
    for kw in [dict(weight=W[:3]), dict(means=mu[None]), dict(lam=-0.1)]:   # K of the head, a 3-d `means`, λ below 0
        with pytest.raises(ValueError): gain_matrix(**(dict(means=mu, weight=W, bias=b, D=D) | kw))
    with pytest.raises(ValueError, match='NaN'): gain_matrix(mu, W, b, D.masked_fill(D > 0, float('nan')))


# ---------------------------------------------------------------- degenerate and extreme inputs
@pytest.mark.parametrize('what', ['means', 'weight', 'bias', 'D'])
@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_inputs_are_named(what, bad):
    mu, W, b = random_head(4, 3, 0)
    args = dict(means=mu, weight=W, bias=b, D=torch.randn(4, 4, dtype=f64))
    args[what] = args[what].clone(); args[what].view(-1)[1] = bad
    with pytest.raises(ValueError, match=f'`{what}` contains NaN or inf'): gain_matrix(**args)


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


def test_gains_that_float64_can_hold_are_returned():
    "02_gain checks the two overflow errors; just below them the gains are returned, finite."
    mu, W, b = random_head(4, 3, 0)
    D = torch.randn(4, 4, dtype=f64)
    G = gain_matrix(mu * 1e150, W / 1e150, b, D)      # 1e300-sized gains: representable, so returned (and finite)
    assert torch.isfinite(G).all() and float(G.abs().max()) > 1e290
