"""Tests of selmix.baselines (the post-hoc plug-in classifier) beyond nbs/09a_baselines, which checks the rule by hand, the
ranking, the mean-recall iterates, the two-Gaussian optimum, brute force on K = 3 for every objective, the coverage
constraint and the test split never read: a coverage multiplier in the rule, the H-mean constraint, the classifier's
methods, never worse than argmax on random problems, the rows of `plugin_baseline`."""
import types
import numpy as np, pytest, torch
from hypothesis import given, settings, strategies as st, HealthCheck
from selmix.data import Split
from selmix.metrics import OBJECTIVES, get_objective, confusion_matrix, coverages, recalls, report
from selmix.baselines import check_probs, probs_from_logits, plugin_rule, rank_key, fit_plugin, plugin_baseline, model_probs

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "Small tensors: intra-op threads only add contention on a shared machine (restored afterwards)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def synthetic(K, N, seed, sep=1.5, prior=None):
    "Labels from `prior`, logits = noise + sep·one-hot + log prior, returned as float64 probabilities."
    g = torch.Generator().manual_seed(seed)
    pri = torch.tensor(prior if prior is not None else [1/K]*K, dtype=torch.float64)
    y = torch.multinomial(pri, N, True, generator=g)
    while len(set(y.tolist())) < K: y = torch.multinomial(pri, N, True, generator=g)
    L = torch.randn(N, K, generator=g, dtype=torch.float64) + sep*torch.nn.functional.one_hot(y, K) + pri.log()
    return probs_from_logits(L), y

# --- the rule and its inputs ---

def test_plugin_rule_with_a_coverage_column():
    P = torch.tensor([[.7, .2, .1], [.5, .1, .4], [.2, .3, .5], [.6, .35, .05]], dtype=torch.float64)
    G = torch.eye(3, dtype=torch.float64) + torch.tensor([0., 0., .5])[None]   # a coverage multiplier on class 2: + 0.5
    assert plugin_rule(P, G).tolist() == [0, 2, 2, 0]                         # [.7,.2,.6], [.5,.1,.9], ..., [.6,.35,.55]

def test_check_probs_errors():
    P = torch.full((4, 3), 1/3, dtype=torch.float64)
    with pytest.raises(ValueError, match='N×K'): check_probs(P, [0, 1, 2, 0], 4)
    with pytest.raises(ValueError, match='one label per row'): check_probs(P, [0, 1, 2], 3)
    with pytest.raises(ValueError, match='unknown objective'): fit_plugin(P, [0, 1, 2, 0], 'accuracy', 3)

# --- the fit: known optimum, brute force, constraints ---

def hidden_class_case(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    side = np.where(y == 2, rng.integers(0, 2, n), y)
    p1 = 1/(1 + np.exp(-3*rng.normal(np.where(side == 1, 1.5, -1.5), 1)))
    p2 = 0.05 + 0.02*rng.random(n)
    return torch.tensor(np.stack([(1 - p1)*(1 - p2), p1*(1 - p2), p2], 1)), torch.tensor(y)

@pytest.mark.parametrize('objective', ['h_mean_min_coverage'])   # 09a_baselines checks mean_recall_min_coverage
def test_constraint_met_where_unconstrained_optimum_violates_it(objective):
    P, y = hidden_class_case(seed=1)
    free = fit_plugin(P, y, 'mean_recall', 3)
    assert coverages(free.confusion(P, y)).min() < 0.95/3 - 0.05
    con = fit_plugin(P, y, objective, 3)
    assert (coverages(con.confusion(P, y)) >= 0.95/3).all() and con.val['feasible']

def test_classifier_methods_agree_with_metrics():
    P, y = synthetic(3, 150, 4)
    clf = fit_plugin(P, y, 'g_mean', 3, iters=5, sweeps=1)
    C = confusion_matrix(y, plugin_rule(P, clf.G), 3)
    torch.testing.assert_close(clf.confusion(P, y), C)
    assert clf.report(P, y) == report(C)
    assert clf.value(P, y) == pytest.approx(report(C)['g_mean']) == pytest.approx(clf.val['value'])
    assert clf.history[0]['stage'] == 'plugin' and clf.history[-1]['stage'] == 'offsets'

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objective=st.sampled_from(OBJECTIVES), K=st.integers(2, 5), seed=st.integers(0, 10**6), sep=st.floats(0., 3.))
def test_never_worse_than_plain_argmax(objective, K, seed, sep):
    "The plain argmax is iterate 0 and every later step only accepts improvements, so the fit never loses on validation."
    P, y = synthetic(K, 60, seed, sep=sep, prior=np.linspace(2, 1, K)/np.linspace(2, 1, K).sum())
    obj = get_objective(objective, K)
    clf = fit_plugin(P, y, objective, K, iters=5, sweeps=1, candidates=32)
    assert rank_key(obj, clf.confusion(P, y)) >= rank_key(obj, confusion_matrix(y, P.argmax(1), K))

# --- the reported rows ---

def toy_split(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) + 2*torch.nn.functional.one_hot(y, 3)[:, :2]
    return Split(x=x, y=y, idx=torch.arange(n))

def test_plugin_baseline_rows():
    "09a_baselines checks that the fit never reads the test split (a poisoned one, garbage labels); here the rows it reports."
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 3).double()
    real = types.SimpleNamespace(num_classes=3, val=toy_split(90, 1), test=toy_split(60, 2), prepare=lambda x: x)
    rows = plugin_baseline(lin, real, ('min_recall',))
    assert [(r['split'], r['rule']) for r in rows] == [('val', 'argmax'), ('val', 'plugin'), ('test', 'argmax'), ('test', 'plugin')]
    P_test = model_probs(lin, real.test, real.prepare)
    assert rows[2]['value'] == pytest.approx(float(recalls(confusion_matrix(real.test.y, P_test.argmax(1), 3)).min()))
