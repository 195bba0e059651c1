"Tests of selmix.metrics beyond nbs/01_metrics (which checks each definition once): many K and random matrices against sklearn/imblearn/scipy, arbitrary multipliers, sparse matrices."
import numpy as np, pytest, torch
from hypothesis import given, settings, assume, strategies as st, HealthCheck
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from imblearn.metrics import geometric_mean_score
from scipy.stats import hmean
from selmix.metrics import OBJECTIVES, HYPERPARAMS, get_objective, confusion_matrix, report, recalls, coverages

@pytest.fixture(autouse=True, scope='module')
def one_thread():
    "Tiny tensors: intra-op threads only add contention on a shared machine (restored afterwards)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

SMOOTH = ('mean_recall', 'g_mean', 'h_mean')
fast = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
few = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def predictions(K, n_per_class, p_correct, seed):
    "Labels with every class present, predictions right with prob p_correct, else uniform guesses."
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(K*n_per_class) % K)
    guess = rng.integers(0, K, len(y))
    return y, np.where(rng.random(len(y)) < p_correct, y, guess)

def random_unconstrained(K, seed, diag=2.0):
    g = torch.Generator().manual_seed(seed)
    Ct = torch.randn(K, K, generator=g, dtype=torch.float64) + diag*torch.eye(K, dtype=torch.float64)
    pi = torch.rand(K, generator=g, dtype=torch.float64) + 0.2
    return Ct, pi/pi.sum()

def joint(Ct, pi): return pi[:, None]*torch.softmax(Ct, 1)

def expected_values(y, p, K):
    "What each base metric must be, computed by independent libraries (recall floor 1/(100K) as `correction`)."
    r = recall_score(y, p, average=None, labels=range(K), zero_division=0)
    eps, h = 1/(100*K), 9*K//10
    return dict(mean_recall=balanced_accuracy_score(y, p), min_recall=r.min(),
                g_mean=geometric_mean_score(y, p, labels=range(K), average='multiclass', correction=eps),
                h_mean=hmean(np.maximum(r, eps)), min_ht_recall=min(r[:h].mean(), r[h:].mean()))

def base_metric(name): return name.split('_min_')[0] if 'coverage' in name else name

# ---------------------------------------------------------------- values against sklearn / imblearn / scipy
@fast
@given(K=st.sampled_from([2, 3, 5, 10]), n=st.integers(1, 30), p=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_values_match_libraries(K, n, p, seed):
    y, yp = predictions(K, n, p, seed)
    C = confusion_matrix(y, yp, K)
    r = recall_score(y, yp, average=None, labels=range(K), zero_division=0)
    np.testing.assert_allclose(recalls(C).numpy(), r, atol=1e-12)
    np.testing.assert_allclose(coverages(C).numpy(), np.bincount(yp, minlength=K)/len(y), atol=1e-12)
    rep = report(C)
    np.testing.assert_allclose(rep['mean_recall'], balanced_accuracy_score(y, yp), atol=1e-12)
    np.testing.assert_allclose(rep['accuracy'], accuracy_score(y, yp), atol=1e-12)
    np.testing.assert_allclose(rep['recalls'], r, atol=1e-12)
    if r.min() > 0:  # without zero recalls the floor is inactive: plain library definitions
        np.testing.assert_allclose(rep['g_mean'], geometric_mean_score(y, yp, labels=range(K), average='multiclass'), atol=1e-12)
        np.testing.assert_allclose(rep['h_mean'], hmean(r), atol=1e-12)
    cov = np.bincount(yp, minlength=K)/len(y); h = 9*K//10
    np.testing.assert_allclose(rep['min_ht_coverage'], min(cov[:h].mean(), cov[h:].mean()), atol=1e-12)
    np.testing.assert_allclose(rep['min_coverage'], cov.min(), atol=1e-12)
    expected = expected_values(y, yp, K)
    for name in OBJECTIVES:
        obj = get_objective(name, K)
        v = obj.value(C)
        assert isinstance(v, torch.Tensor) and v.ndim == 0
        np.testing.assert_allclose(v.item(), expected[base_metric(name)], atol=1e-12, err_msg=name)
        if 'coverage' in name:
            want = (cov if name.endswith('_min_coverage') else np.array([cov[:h].mean(), cov[h:].mean()])) - 0.95/K
            np.testing.assert_allclose(obj.constraints(C).numpy(), want, atol=1e-12)
        else:
            assert obj.constraints(C).numel() == 0

# ---------------------------------------------------------------- derivatives
def fd_check(obj, Ct, pi, n_entries=None, n_dirs=0, seed=0, h=1e-6):
    "Central finite differences of the surrogate (multipliers fixed) on entries and along random directions."
    f = lambda c: obj.surrogate(joint(c, pi)).item()
    D = obj.grad_unconstrained(joint(Ct, pi))
    scale = D.abs().max().item()
    g = torch.Generator().manual_seed(seed)
    K = len(Ct)
    idx = list(np.ndindex(K, K)) if n_entries is None else \
        [divmod(int(i), K) for i in torch.randperm(K*K, generator=g)[:n_entries]]
    for (k, l) in idx:
        E = torch.zeros_like(Ct); E[k, l] = h
        assert abs((f(Ct + E) - f(Ct - E))/(2*h) - D[k, l].item()) < 1e-6*scale + 1e-10, (obj.name, k, l)
    for _ in range(n_dirs):
        V = torch.randn(K, K, generator=g, dtype=torch.float64)
        fd = (f(Ct + h*V) - f(Ct - h*V))/(2*h)
        assert abs(fd - (D*V).sum().item()) < 1e-6*scale*V.abs().sum().item() + 1e-10, obj.name

MULTIPLIED = tuple(n for n in OBJECTIVES if n not in SMOOTH)   # the objectives whose surrogate has Lagrange multipliers

@pytest.mark.parametrize('K', [2, 10, 100])
@pytest.mark.parametrize('name', MULTIPLIED)
def test_grad_matches_finite_differences_at_arbitrary_multipliers(name, K):
    "01_metrics checks D against finite differences at the multipliers `update` sets (where a coverage term may be all zero); here at arbitrary ones, so every term is exercised."
    Ct, pi = random_unconstrained(K, 1)
    g = torch.Generator().manual_seed(K)
    obj = get_objective(name, K)
    if obj.lam_recall is not None:
        obj.lam_recall = torch.softmax(torch.randn(len(obj.lam_recall), generator=g, dtype=torch.float64), 0)
    if obj.lam_cov is not None:
        obj.lam_cov = 100*torch.rand(len(obj.lam_cov), generator=g, dtype=torch.float64)
    n = None if K == 2 else 20                     # K=2: every entry; larger K: 20 random entries + 3 directions
    fd_check(obj, Ct, pi, n_entries=n, n_dirs=3, seed=1)

@fast
@given(K=st.sampled_from([2, 3, 10]), n=st.integers(1, 8), p=st.floats(0, 1), seed=st.integers(0, 2**31),
       name=st.sampled_from(OBJECTIVES))
def test_never_nan_or_inf(K, n, p, seed, name):
    "Sparse confusion matrices from few samples (zero recalls, never-predicted classes): everything stays finite."
    y, yp = predictions(K, n, p, seed)
    C = confusion_matrix(y, yp, K)
    obj = get_objective(name, K, beta=0.5)
    for _ in range(2): state = obj.update(C)
    assert all(np.isfinite(v).all() for v in state.values())
    for t in (obj.value(C), obj.surrogate(C), obj.grad_unconstrained(C), obj.grad_confusion(C), obj.constraints(C)):
        assert torch.isfinite(t).all()
    assert all(np.isfinite(v).all() for v in report(C).values())
    x = C.clone().requires_grad_()
    if name in SMOOTH:
        obj.value(x).backward(); assert torch.isfinite(x.grad).all()

# ---------------------------------------------------------------- multipliers
@fast
@given(K=st.sampled_from([2, 5, 10, 100]), seed=st.integers(0, 2**31), beta=st.floats(0, 1),
       omega=st.floats(1, 200))
def test_min_recall_weights_move_to_worst_class(K, seed, beta, omega):
    Ct, pi = random_unconstrained(K, seed, diag=1.0)
    C = joint(Ct, pi)
    r = recalls(C)
    obj = get_objective('min_recall', K, beta=beta, omega=omega)
    lam = torch.tensor(obj.update(C)['lam_recall'], dtype=torch.float64)
    assert lam.sum().item() == pytest.approx(1) and (lam >= 0).all()
    worst = r.argmin()
    assert lam[worst] == lam.max()
    order = r.argsort()                                   # lower recall → at least as much weight
    assert (lam[order][1:] <= lam[order][:-1] + 1e-15).all()
    prev = lam[worst].item()                              # repeated refreshes on the same C keep concentrating
    for _ in range(3):
        cur = obj.update(C)['lam_recall'][worst]
        assert cur >= prev - 1e-12; prev = cur
    # one ascent step on the surrogate raises the worst recall at least as fast as a mean-recall step
    x = Ct.clone().requires_grad_()
    recalls(joint(x, pi))[worst].backward()
    D_min, D_mean = obj.grad_unconstrained(C), get_objective('mean_recall', K).grad_unconstrained(C)
    assert (x.grad*D_min).sum() >= (x.grad*D_mean).sum() - 1e-12

@fast
@given(K=st.sampled_from([2, 10, 100]), seed=st.integers(0, 2**31))
def test_min_ht_weights_favour_weaker_group(K, seed):
    Ct, pi = random_unconstrained(K, seed, diag=1.0)
    C = joint(Ct, pi)
    r, h = recalls(C), 9*K//10
    lam = get_objective('min_ht_recall', K).update(C)['lam_recall']
    weaker = int(r[h:].mean() < r[:h].mean())
    assert lam[weaker] >= lam[1 - weaker] and sum(lam) == pytest.approx(1)

@fast
@given(K=st.sampled_from([2, 10, 100]), seed=st.integers(0, 2**31), alpha=st.floats(0.5, 1),
       coverage_tau=st.floats(1e-3, 0.1), lambda_max=st.floats(1, 1000),
       name=st.sampled_from(['mean_recall_min_coverage', 'h_mean_min_coverage']))
def test_coverage_multipliers_follow_violations(K, seed, alpha, coverage_tau, lambda_max, name):
    Ct, pi = random_unconstrained(K, seed, diag=1.0)
    C = joint(Ct, pi)
    cov = coverages(C)
    obj = get_objective(name, K, alpha=alpha, coverage_tau=coverage_tau, lambda_max=lambda_max)
    lam = torch.tensor(obj.update(C)['lam_cov'], dtype=torch.float64)
    violated = cov < alpha/K
    assert ((lam > 0) == violated).all()                  # a multiplier exactly where a constraint is violated
    assert (lam >= 0).all() and (lam <= lambda_max).all()
    order = cov.argsort()                                 # more violated → larger multiplier
    assert (lam[order][1:] <= lam[order][:-1] + 1e-12).all()
    # hand-derived value for the most violated class
    j = cov.argmin()
    want = min(max(lambda_max*(1 - np.exp(min(cov[j].item() - alpha/K, 0)/coverage_tau)), 0), lambda_max)
    assert lam[j].item() == pytest.approx(want, rel=1e-9, abs=1e-12)

@few
@given(K=st.sampled_from([3, 10]), seed=st.integers(0, 2**31), shift=st.floats(1, 4),
       name=st.sampled_from(['mean_recall_min_coverage', 'h_mean_min_coverage']))
def test_surrogate_step_raises_violated_coverage(K, seed, shift, name):
    "With one class under-predicted, the Lagrangian's ascent direction raises its coverage more than the bare metric's."
    g = torch.Generator().manual_seed(seed)
    Ct = 3*torch.eye(K, dtype=torch.float64) + 0.1*torch.randn(K, K, generator=g, dtype=torch.float64)
    v = int(torch.randint(K, (1,), generator=g))
    Ct[:, v] -= shift
    pi = torch.full((K,), 1/K, dtype=torch.float64)
    C = joint(Ct, pi)
    cov = coverages(C)
    assume(((cov < 0.95/K).nonzero().flatten().tolist()) == [v])
    obj = get_objective(name, K); obj.update(C)
    assert obj.lam_cov[v] > 0 and obj.lam_cov.sum() == obj.lam_cov[v]
    bare = get_objective(name.replace('_min_coverage', ''), K)
    x = Ct.clone().requires_grad_()
    coverages(joint(x, pi))[v].backward()
    assert (x.grad*obj.grad_unconstrained(C)).sum() > (x.grad*bare.grad_unconstrained(C)).sum()

def test_ht_coverage_multipliers():
    K = 10
    C = torch.zeros(K, K, dtype=torch.float64)
    C.fill_diagonal_(1/K); C[9, 9] = 0.5/K; C[9, 0] = 0.5/K            # tail class 9 predicted half as often
    obj = get_objective('mean_recall_min_ht_coverage', K)
    lam = obj.update(C)['lam_cov']
    assert lam[0] == 0 and lam[1] == pytest.approx(100*(1 - np.exp((0.05 - 0.095)/0.01)))

def test_reset_and_state():
    obj = get_objective('h_mean_min_ht_coverage', 10)
    assert obj.state() == {'lam_cov': [0., 0.]}
    assert get_objective('min_recall', 4).state() == {'lam_recall': [0.25]*4}
    assert get_objective('g_mean', 4).state() == {}

# ---------------------------------------------------------------- errors
def test_errors_the_notebook_does_not_check():
    "01_metrics checks the messages for unknown names, hyper-parameters, shapes, sums, signs, NaN, empty classes and labels; these are the rest."
    with pytest.raises(ValueError) as e: get_objective('worst_recall', 10)
    assert all(n in str(e.value) for n in OBJECTIVES)                  # every valid name, not only one
    with pytest.raises(ValueError, match='num_classes'): get_objective('min_recall', 1)
    with pytest.raises(ValueError, match='beta'): get_objective('min_recall', 3, beta=2)
    with pytest.raises(ValueError, match='lambda_max'): get_objective('h_mean_min_coverage', 3, lambda_max=-1)
    with pytest.raises(ValueError, match='integer'): confusion_matrix([0., 1.], [0., 1.], 2)
    assert set(HYPERPARAMS) == {'alpha', 'omega', 'coverage_tau', 'lambda_max', 'beta', 'eps'}


# ---------------------------------------------------------------- the confusion floor behind D (issue 20 item 3)
def zero_recall_confusion(K=10, dead=4, seed=0):
    "Predictions right 60% of the time, except class `dead`, always predicted as the next class: recall 0, one full cell."
    y, yp = predictions(K, 20, 0.6, seed)
    return confusion_matrix(y, np.where(y == dead, (dead + 1) % K, yp), K)

@pytest.mark.parametrize('name,dead', [('min_ht_recall', 9)])   # min recall is checked in 01_metrics
def test_zero_recall_row_of_D_is_nonzero_and_largest(name, dead):
    C = zero_recall_confusion(dead=dead)
    assert recalls(C)[dead] == 0
    obj = get_objective(name, 10, omega=40); obj.update(C)
    D, D0 = obj.grad_unconstrained(C), obj.grad_unconstrained(C, floor=0)
    assert (D0[dead] == 0).all() and D0.abs().amax(1).argmax() != dead     # the failure the floor removes
    assert (D[dead] != 0).all() and D.abs().amax(1).argmax() == dead
    assert D[dead, dead] > 0                                               # raising the dead class's diagonal helps

@pytest.mark.parametrize('K', [2, 10, 100])
@pytest.mark.parametrize('name', OBJECTIVES)
def test_floor_changes_only_rows_with_tiny_entries(name, K):
    Ct, pi = random_unconstrained(K, 5)
    C = joint(Ct, pi)
    assert C.min() > 1e-7
    obj = get_objective(name, K); obj.update(C)
    assert torch.equal(obj.grad_unconstrained(C), obj.grad_unconstrained(C, floor=0))   # no tiny entry: bit for bit
    y, yp = predictions(K, 3, 0.5, K)
    Ch = confusion_matrix(y, yp, K)
    obj.update(Ch)
    tiny = (Ch < 1e-7).any(1)
    D, D0 = obj.grad_unconstrained(Ch), obj.grad_unconstrained(Ch, floor=0)
    if name.startswith(('g_mean', 'h_mean')):   # ψ reads every recall, and the clip moves a recall of 1 by ~1e-7/π
        torch.testing.assert_close(D[~tiny], D0[~tiny], rtol=1e-5, atol=0)
    else:                                        # multipliers fixed: other rows are untouched
        assert torch.equal(D[~tiny], D0[~tiny])
