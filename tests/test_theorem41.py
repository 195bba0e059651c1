"""Tests of selmix.theorem41 beyond nbs/07_theorem41_check (which replays one pair with torch.optim and checks objective_change
and projection_spread by hand): many pairs at once with pools of different sizes, the soft measure, the backbone ratio."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from selmix.theorem41 import mixup_head_steps, objective_change, mixup_model_steps
from selmix.models import TinyMLP
from selmix.metrics import get_objective


def replay_one_pair(W0, b0, pools, partners, pairs, lr, steps, bs, seed, p_index):
    "torch.optim.SGD on F.cross_entropy, consuming the generator exactly as mixup_head_steps does."
    g = torch.Generator().manual_seed(seed)
    P = len(pairs)
    lin = nn.Linear(W0.shape[1], W0.shape[0]).double()
    lin.weight.data, lin.bias.data = W0.clone(), b0.clone()
    opt = torch.optim.SGD(lin.parameters(), lr=lr)
    i, j = pairs[p_index].tolist()
    for _ in range(steps):
        lam = 0.6 + 0.4 * torch.rand(P, bs, 1, generator=g, dtype=torch.float64)
        ia = (torch.rand(P, bs, generator=g) * torch.tensor([len(pools[c]) for c in pairs[:, 0].tolist()])[:, None]).long()
        ic = (torch.rand(P, bs, generator=g) * torch.tensor([len(partners[c]) for c in pairs[:, 1].tolist()])[:, None]).long()
        z = lam[p_index] * pools[i][ia[p_index]] + (1 - lam[p_index]) * partners[j][ic[p_index]]
        opt.zero_grad(); F.cross_entropy(lin(z), torch.full((bs,), i)).backward(); opt.step()
    return lin.weight.data, lin.bias.data


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 1000), st.floats(0.01, 2.0), st.integers(1, 4))
def test_mixup_head_steps_equals_torch_sgd_for_every_pair(seed, lr, steps):
    g = torch.Generator().manual_seed(seed)
    K, d = 3, 4
    pools = [torch.randn(n, d, generator=g, dtype=torch.float64) for n in (5, 2, 7)]
    partners = [torch.randn(n, d, generator=g, dtype=torch.float64) for n in (3, 6, 1)]
    W0, b0 = torch.randn(K, d, generator=g, dtype=torch.float64), torch.randn(K, generator=g, dtype=torch.float64)
    pairs = torch.tensor([[0, 1], [2, 2], [1, 0]])
    Wp, bp = mixup_head_steps(W0, b0, pools, partners, pairs, lr, steps, batch_size=6, generator=torch.Generator().manual_seed(seed))
    for p in range(len(pairs)):
        Wr, br = replay_one_pair(W0, b0, pools, partners, pairs, lr, steps, 6, seed, p)
        np.testing.assert_allclose(Wp[p].numpy(), Wr.numpy(), atol=1e-10)
        np.testing.assert_allclose(bp[p].numpy(), br.numpy(), atol=1e-10)


def test_objective_change_soft_is_smooth_version():
    y = torch.tensor([0, 1, 1])
    before = torch.zeros(3, 2, dtype=torch.float64)               # every row 50/50 → soft mean recall 0.5
    after = torch.tensor([[[0., 0.], [0., 0.], [0., 0.]]], dtype=torch.float64)
    obj = get_objective('mean_recall', 2)
    assert objective_change(obj, y, before, after, soft=True).item() == pytest.approx(0.0)
    after = torch.tensor([[[np.log(3), 0.], [0., 0.], [0., 0.]]], dtype=torch.float64)   # row 0 → 3/4 on class 0
    assert objective_change(obj, y, before, after, soft=True).item() == pytest.approx((0.75 + 0.5) / 2 - 0.5)


def test_mixup_model_steps_backbone_ratio():
    torch.manual_seed(0)
    m = TinyMLP(4, 3, hidden=8, feat_dim=5)
    x = torch.randn(10, 4)
    snapshot = {k: v.clone() for k, v in m.state_dict().items()}
    frozen = mixup_model_steps(m, x, x, 1, lr=0.5, steps=2, batch_size=4, backbone_lr_ratio=0.)
    moved = mixup_model_steps(m, x, x, 1, lr=0.5, steps=2, batch_size=4, backbone_lr_ratio=1.)
    for p, q, r in zip(m.body.parameters(), frozen.body.parameters(), moved.body.parameters()):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, r) for p, r in zip(m.body.parameters(), moved.body.parameters()))
    assert not torch.equal(frozen.head.weight, m.head.weight)   # the head did move
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in snapshot.items())   # the original model is untouched
    with pytest.raises(ValueError, match='non-empty'): mixup_model_steps(m, x[:0], x, 0, 0.1, 1)
