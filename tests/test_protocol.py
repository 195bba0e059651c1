"Issue 10: the paper's protocol by default, the released code's choices as named switches, Algorithm 2 without a pool."
import copy, math
import numpy as np
from dataclasses import replace
import pytest, torch
from selmix.data import load_benchmark, Split
from selmix.metrics import get_objective
from selmix.pretrain import pretrained_model, pretrain_config
from selmix.finetune import FinetuneConfig, finetune_config, finetune, make_optimizer, PRESETS

# Tables G.1 and G.2 of the paper, transcribed independently of selmix.finetune:
# dataset: (steps, s, omega, lambda_max, coverage_tau, alpha, batch, head lr, backbone lr)
TABLE_G = {
    'cifar10_lt':      (10_000, 10, 40, 100, 0.01, 0.95, 64, 3e-4, 3e-5),
    'cifar100_lt':     (10_000, 10, 20, 100, 0.01, 0.95, 64, 3e-4, 3e-5),
    'stl10_lt':        (10_000, 2, 20, 100, 0.01, 0.95, 64, 3e-4, 3e-5),
    'imagenet100_lt':  (10_000, 10, 20, 100, 0.01, 0.95, 64, 0.1, 0.01),
    'cifar10_lt_sup':  (2_000, 10, 50, 100, 0.01, 0.95, 128, 3e-3, 3e-4),
    'cifar100_lt_sup': (2_000, 10, 25, 100, 0.01, 0.95, 128, 3e-3, 3e-4),
    'imagenet_lt':     (2_500, 10, 100, 100, 0.001, 0.95, 256, 0.1, 0.01),
}

@pytest.mark.parametrize('dataset', sorted(TABLE_G))
def test_resolved_config_is_the_table_column(dataset):
    cfg = finetune_config(dataset); c = cfg.flat()
    got = [c[k] for k in ('steps', 's', 'omega', 'lambda_max', 'coverage_tau', 'alpha', 'batch_size', 'lr')] + [c['lr'] * c['backbone_lr_ratio']]
    assert got == pytest.approx(TABLE_G[dataset], rel=1e-12)
    assert [c[k] for k in ('protocol', 'refresh_every', 'momentum', 'frozen', 'freeze_bn_affine', 'gain_confusion')] + [cfg.leaks.on] == \
           ['paper', 50, 0.0, False, True, 'hard', []]

def test_released_protocol_differs_only_where_the_released_code_does():
    p, r = finetune_config('cifar10_lt').to_dict(), finetune_config('cifar10_lt', protocol='released').to_dict()
    assert {k for k in p if p[k] != r[k]} == {'protocol', 'gain_formula', 'omega', 'ht_norm', 'released_floor', 'leak_oracle_partners', 'leak_test_checkpoint'}
    assert r['omega'] == 50 and r['gain_formula'] == 'official' and r['momentum'] == 0

@pytest.fixture(scope='module')
def small(): return load_benchmark('mnist_lt', seed=0, val_per_class=10, M1=30, test_per_class=10)

@pytest.fixture(scope='module')
def model0():
    b = load_benchmark('mnist_lt', seed=0)
    return pretrained_model(b, pretrain_config('mnist_lt', method='la', steps=100), 'cpu', progress=False).eval()

def bn_state(m):
    return {f'{n}.{k}': v.clone() for n, mod in m.named_modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
            for k, v in list(mod.named_parameters()) + list(mod.named_buffers())}

def test_released_full_network_keeps_batchnorm_bit_identical(small, model0, tmp_path):
    cfg = finetune_config('mnist_lt', protocol='released').replace(steps=6, refresh_every=3, batch_size=16, lr=0.05,
                  leak_test_checkpoint=False)   # the last model, not a refresh chosen on test (maybe step 0)
    opt, _ = make_optimizer(copy.deepcopy(model0), cfg)
    assert opt.defaults['momentum'] == 0 and all(g.get('momentum', 0) == 0 for g in opt.param_groups)
    before = bn_state(model0)
    with pytest.warns(UserWarning, match='leak'):
        m, h = finetune(copy.deepcopy(model0), small, cfg, tmp_path, 'cpu', progress=False)
    after = bn_state(m)
    assert before.keys() == after.keys() and len(before) >= 4 * 5       # weight, bias, running mean/var, count per layer
    assert all(torch.equal(before[k], after[k]) for k in before)
    convs = [k for k, v in m.state_dict().items() if k.endswith('weight') and v.dim() == 4]
    assert any(not torch.equal(model0.state_dict()[k], m.state_dict()[k]) for k in convs)   # the backbone did train

class Forbidden:
    "Stands for data a run must never read: any use raises."
    def __init__(self, what): self.what = what
    def _no(self, *a, **k): raise AssertionError(f'{self.what} was read')
    __getattr__ = lambda self, k: self._no() if not k.startswith('__') else object.__getattribute__(self, k)
    __getitem__ = __iter__ = __lt__ = __gt__ = __ge__ = __le__ = __eq__ = __array__ = _no
    __hash__ = object.__hash__
    @classmethod
    def __torch_function__(cls, *a, **k): raise AssertionError('forbidden data was read')

class EmptyForbiddenPool:
    "An unlabeled pool of size 0 whose contents must never be touched."
    def __len__(self): return 0
    def __getattr__(self, k): raise AssertionError(f'the unlabeled pool was read ({k})')

def test_supervised_run_never_reads_an_unlabeled_pool(model0, tmp_path):
    sup = load_benchmark('mnist_lt_sup', seed=0, val_per_class=10, test_per_class=10)
    assert len(sup.unlabeled) == 0
    sup = replace(sup, unlabeled=EmptyForbiddenPool())
    cfg = finetune_config('mnist_lt_sup').replace(steps=4, refresh_every=2, batch_size=8)
    m, h = finetune(copy.deepcopy(model0), sup, cfg, tmp_path, 'cpu', progress=False)
    assert h[-1]['step'] == 4 and all(math.isfinite(r['objective']) for r in h)

def test_full_network_semi_supervised_run_never_reads_hidden_labels(small, model0, tmp_path):
    u = small.unlabeled
    blind = replace(small, unlabeled=Split(u.x, None, u.idx, hidden_y=Forbidden('hidden labels')))
    cfg = finetune_config('mnist_lt').replace(steps=4, refresh_every=2, batch_size=8)
    assert not cfg.optim.frozen and not cfg.leaks.leak_oracle_partners
    m, h = finetune(copy.deepcopy(model0), blind, cfg, tmp_path/'honest', 'cpu', progress=False)
    assert h[-1]['step'] == 4
    with pytest.raises(AssertionError, match='hidden labels was read'), pytest.warns(UserWarning, match='leak'):  # the guard works
        finetune(copy.deepcopy(model0), blind, cfg.replace(leak_oracle_partners=True), tmp_path/'leaky', 'cpu', progress=False)

def test_oracle_leak_uses_true_labels_as_partner_classes(small, model0, tmp_path):
    from selmix.finetune import refresh
    cfg = finetune_config('mnist_lt').replace(leak_oracle_partners=True)
    st = refresh(copy.deepcopy(model0), small, get_objective('min_recall', 10), cfg, 'cpu')
    assert torch.equal(st['pseudo'], small.unlabeled.hidden_y)

# ---- issue 12: data-valuation policies and λ schedules inside the same loop
@pytest.mark.parametrize('policy', ['forgetting', 'hard_pool'])
def test_valuation_policies_run_and_draw_where_they_should(small, model0, tmp_path, policy):
    "Every recorded pair distribution is the policy's, recomputed here from its own inputs (numpy, not the package's code)."
    cfg = finetune_config('mnist_lt', policy=policy, eta=0.25, forgetting_steps=20).replace(steps=4, refresh_every=2, batch_size=8)
    m, h = finetune(copy.deepcopy(model0), small, cfg, tmp_path, 'cpu', progress=False)
    Ps = [np.array(r['P']) for r in h if r.get('P') is not None]
    K = len(Ps[0])
    assert h[-1]['step'] == 4 and len(Ps) >= 2 and all(abs(P.sum() - 1) < 1e-12 for P in Ps)
    if policy == 'forgetting':   # anchor uniform, partner ∝ F[i, j] + 1/(K−1) over j ≠ i (smoothing 1), F of the warm-up
        F = np.array(h[0]['forgetting'], dtype=float)
        assert F.shape == (K, K) and np.all(np.diag(F) == 0)
        W = (F + 1/(K - 1)) * (1 - np.eye(K))
        for P in Ps: np.testing.assert_allclose(P, W / W.sum(1, keepdims=True) / K, rtol=1e-12, atol=1e-15)
    else:   # partner ∝ the pseudo-labels of the hardest quarter of the pool by EL2N, at step 0 those of the pre-trained model
        from selmix.models import predict
        p = torch.softmax(predict(copy.deepcopy(model0).eval(), small.unlabeled, small.prepare, 'cpu').double(), 1).numpy()
        pseudo = p.argmax(1)
        el2n = np.linalg.norm(p - np.eye(K)[pseudo], axis=1)
        n_hard = math.ceil(0.25 * len(pseudo))
        counts = np.bincount(pseudo[np.argsort(-el2n, kind='stable')[:n_hard]], minlength=K)
        np.testing.assert_allclose(Ps[0], np.tile(counts, (K, 1)) / (K * n_hard), rtol=1e-12, atol=1e-15)
        for P in Ps[1:]:   # later refreshes: the same structure, from the model as it is then
            np.testing.assert_allclose(P, np.tile(P[0], (K, 1)), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(P[0] * K * n_hard, np.round(P[0] * K * n_hard), atol=1e-9)

def test_hard_pool_supervised_uses_labeled_partners(model0, tmp_path):
    sup = load_benchmark('mnist_lt_sup', seed=0, val_per_class=10, test_per_class=10)
    cfg = finetune_config('mnist_lt_sup', policy='hard_pool', eta=0.5).replace(steps=2, refresh_every=2, batch_size=8)
    m, h = finetune(copy.deepcopy(model0), replace(sup, unlabeled=EmptyForbiddenPool()), cfg, tmp_path, 'cpu', progress=False)
    assert h[-1]['step'] == 2

def test_schedules_and_loss_are_validated():
    with pytest.raises(ValueError, match='valid: constant, uniform, sine, tanh'): FinetuneConfig(lam_schedule='cosine')
    with pytest.raises(ValueError, match='valid: mixup, regmixup'): FinetuneConfig(loss='focal')
    c = FinetuneConfig(lam_schedule='tanh', steps=100)
    assert c.mixing.schedule().mean(0, 100) == 1.0 and abs(c.mixing.schedule().mean(99, 100) - 0.5) < 1e-12

def test_uniform_schedule_keeps_the_old_draws(small):
    "lam_schedule='uniform' draws exactly what U(0.6, 1) per sample drew before schedules existed, after the same draws."
    from selmix.finetune import mixup_step, make_optimizer, ClassIndex
    from selmix.policies import sample_pairs
    P = torch.full((10, 10), 0.01, dtype=torch.float64)
    cfg = FinetuneConfig(batch_size=64, frozen=True)
    m = torch.nn.Module(); m.head = torch.nn.Linear(3, 10)
    b = mixup_step(m, small, P, ClassIndex(small.labeled.y, 10), None, None, cfg, torch.Generator().manual_seed(3), 0,
                   *make_optimizer(m, cfg), 'cpu', {'labeled': torch.randn(len(small.labeled), 3)})
    g = torch.Generator().manual_seed(3)
    i, j = sample_pairs(P, 64, g); ClassIndex(small.labeled.y, 10).sample(i, g)
    fb_draws = ClassIndex(small.labeled.y, 10).sample(j, g)
    want = torch.empty(64, dtype=torch.float64).uniform_(0.6, 1.0, generator=g).float()
    assert torch.equal(b['lam'], want) and torch.equal(b['i'], i) and torch.equal(b['b_lab'], fb_draws)
