"SelMix fine-tuning: refresh against independent computations, sampling, hidden labels never read, resumption, schedule."
import copy, math
from dataclasses import replace
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion
from selmix.data import load_benchmark, Split
from selmix.gain import gain_matrix_reference
from selmix.metrics import get_objective
from selmix.models import predict, extract_features
from selmix.pretrain import pretrained_model, pretrain_config
from selmix.finetune import (FinetuneConfig, finetune_config, ClassIndex, refresh, mixup_step, make_optimizer,
                             finetune, CKPT_NAME)

@pytest.fixture(scope='module')
def bench(): return load_benchmark('mnist_lt', seed=0)

@pytest.fixture(scope='module')
def small():
    "A small split of the embedded data (fast refreshes) for the mechanics."
    return load_benchmark('mnist_lt', seed=0, val_per_class=10, M1=30, test_per_class=10)

@pytest.fixture(scope='module')
def model0(bench):
    "A short logit-adjusted pre-training (the one 10_finetune and run.ipynb's smoke mode cache)."
    return pretrained_model(bench, pretrain_config('mnist_lt', method='la', steps=100), 'cpu', progress=False).eval()

def params_equal(a, b): return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

def test_refresh_matches_independent_computations(small, model0):
    bench = small
    cfg = FinetuneConfig(objective='min_recall', gain_confusion='hard')
    obj = get_objective('min_recall', bench.num_classes)
    st_ = refresh(copy.deepcopy(model0), bench, obj, cfg, 'cpu')
    logits = predict(model0, bench.val, bench.prepare, 'cpu')
    y, yp = bench.val.y.numpy(), logits.argmax(1).numpy()
    C = sk_confusion(y, yp, labels=range(bench.num_classes)) / len(y)                 # sklearn's confusion matrix
    np.testing.assert_allclose(st_['C'].numpy(), C, atol=1e-12)
    f = extract_features(model0, bench.val, bench.prepare, 'cpu').double().numpy()
    mu = torch.tensor(np.stack([f[y == k].mean(0) for k in range(bench.num_classes)]))
    obj2 = get_objective('min_recall', bench.num_classes); obj2.update(torch.tensor(C))
    G = gain_matrix_reference(mu, model0.head.weight.detach().double(), model0.head.bias.detach().double(),
                              obj2.grad_unconstrained(torch.tensor(C)), lam=0.8)      # per-pair autograd
    torch.testing.assert_close(st_['G'], G.double(), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(st_['pseudo'], predict(model0, bench.unlabeled, bench.prepare, 'cpu').argmax(1))

@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=40), st.lists(st.integers(0, 5), min_size=1, max_size=20))
def test_class_index_draws_members_only(labels, classes):
    ci, cls = ClassIndex(torch.tensor(labels, dtype=torch.long), 6), torch.tensor(classes)
    idx = ci.sample(cls, torch.Generator().manual_seed(0))
    lab = np.array(labels)
    for c, i in zip(classes, idx.tolist()):
        if c in labels: assert lab[i] == c
        else: assert i == -1

def head_on_cache(small, cfg, d=4, seed=0):
    "A linear head on random cached features: with a cache, `mixup_step` touches nothing else of a model."
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Module(); m.head = torch.nn.Linear(d, small.num_classes)
    cache = {'labeled': torch.randn(len(small.labeled), d, generator=g)}
    return (m, cache) + make_optimizer(m, cfg)

def test_pairs_follow_P(small):
    K = small.num_classes
    P = torch.rand(K, K, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) ** 4; P /= P.sum()
    cfg = FinetuneConfig(batch_size=20000, frozen=True)
    m, cache, opt, sched = head_on_cache(small, cfg)
    b = mixup_step(m, small, P, ClassIndex(small.labeled.y, K), None, None, cfg, torch.Generator().manual_seed(0), 0,
                   opt, sched, 'cpu', cache)
    freq = torch.bincount(b['i'] * K + b['j'], minlength=K * K).double() / cfg.optim.batch_size
    assert (freq - P.flatten()).abs().max() < 0.01
    assert b['from_labeled'].all() and (small.labeled.y[b['b_lab']] == b['j']).all()   # no pool: labeled partners
    assert (b['lam'] >= 0.6).all() and (b['lam'] <= 1).all() and abs(b['lam'].mean() - 0.8) < 0.01

def test_regmixup_step_is_mixup_plus_clean_ce(small):
    "The loss of a step, by hand from the draws: CE of the mixed features, plus CE of the clean anchor for 'regmixup'."
    K = small.num_classes
    P = torch.full((K, K), 1 / K**2, dtype=torch.float64)
    for loss in ('mixup', 'regmixup'):
        cfg = FinetuneConfig(batch_size=32, frozen=True, loss=loss)
        m, cache, opt, sched = head_on_cache(small, cfg)
        W, bias = m.head.weight.detach().clone(), m.head.bias.detach().clone()
        b = mixup_step(m, small, P, ClassIndex(small.labeled.y, K), None, None, cfg, torch.Generator().manual_seed(2), 0,
                       opt, sched, 'cpu', cache)
        fa, fp = cache['labeled'][b['a']].numpy(), cache['labeled'][b['b_lab']].numpy()
        lam = b['lam'].numpy()[:, None]
        def ce(x):
            z = x @ W.numpy().T + bias.numpy()
            z = z - z.max(1, keepdims=True)
            return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), b['i'].numpy()]))
        want = ce(lam * fa + (1 - lam) * fp) + (ce(fa) if loss == 'regmixup' else 0.)
        assert abs(b['loss'] - want) < 1e-5, (loss, b['loss'], want)

def test_hidden_labels_are_never_read(small, model0, tmp_path):
    "Scrambling (or removing) the unlabeled pool's ground truth changes nothing in a run."
    cfg = FinetuneConfig(steps=12, refresh_every=5, frozen=True, lr=1e-3)
    m1, h1 = finetune(copy.deepcopy(model0), small, cfg, tmp_path/'a', 'cpu', progress=False)
    u = small.unlabeled
    blind = replace(small, unlabeled=Split(u.x, None, u.idx, hidden_y=None))
    m2, h2 = finetune(copy.deepcopy(model0), blind, cfg, tmp_path/'b', 'cpu', progress=False)
    assert params_equal(m1, m2) and h1 == h2

def test_resume_after_kill_is_exact_frozen_uniform(small, model0, tmp_path):
    cfg = FinetuneConfig(policy='uniform', steps=12, refresh_every=5, frozen=True, lr=1e-3, objective='mean_recall_min_coverage')
    full, hf = finetune(copy.deepcopy(model0), small, cfg, tmp_path/'full', 'cpu', progress=False)
    class Kill(Exception): pass
    def kill(step, loss):
        if step == 8: raise Kill
    with pytest.raises(Kill): finetune(copy.deepcopy(model0), small, cfg, tmp_path/'cut', 'cpu', progress=False, callback=kill)
    assert torch.load(tmp_path/'cut'/CKPT_NAME, weights_only=False)['step'] == 5
    seen = []
    res, hr = finetune(copy.deepcopy(model0), small, cfg, tmp_path/'cut', 'cpu', progress=False, callback=lambda s, l: seen.append(s))
    assert seen == list(range(6, 13))                    # resumed from the checkpoint, did not start over
    assert params_equal(full, res) and hf == hr
    with pytest.raises(ValueError, match='another fine-tuning config'):
        finetune(copy.deepcopy(model0), small, cfg.replace(s=1.0), tmp_path/'cut', 'cpu', progress=False)

def test_frozen_trains_head_only_and_schedule_is_cosine(small, model0, tmp_path):
    cfg = FinetuneConfig(steps=12, refresh_every=4, frozen=True, lr=0.01)
    m, h = finetune(copy.deepcopy(model0), small, cfg, tmp_path, 'cpu', progress=False)
    sd0 = model0.state_dict()
    assert all(torch.equal(v, sd0[k]) for k, v in m.state_dict().items() if not k.startswith('head'))
    assert not torch.equal(m.head.weight, model0.head.weight)
    for r in h: assert math.isclose(r['lr'], 0.01 * (1 + math.cos(math.pi * r['step'] / 12)) / 2, rel_tol=1e-9, abs_tol=1e-12)
