"""nbs/report.ipynb on the runs of a tiny REAL sweep (the `smoke` grid: five real runs of nbs/run.ipynb, two of them
baselines, from conftest.py's `smoke_sweep`) plus two more seeds made from them, so that every aggregate over seeds has
three different values to get right. (nbdev_test runs report.ipynb on its own one-seed tiny sweep.)"""
import csv, json, math, shutil, statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, recall_score

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'
FACTOR = {0: 1.0, 1: 0.9, 2: 0.6}   # seed -> factor on every error rate 1 − recall of the real seed-0 runs (0.6: the mean is not the median)
AFFINE_KEYS = ('mean_recall', 'min_recall', 'head_recall', 'tail_recall', 'min_ht_recall', 'accuracy')   # each follows r -> 1 − f(1 − r)

def _f(x): return float(x) if x not in ('', None) else math.nan

def as_seed(m:dict, seed:int)->dict:
    "A copy of metrics.json `m` as if another seed had run: every recall r becomes 1 − FACTOR[seed]·(1 − r), and the summaries with it."
    m, f = json.loads(json.dumps(m)), FACTOR[seed]
    m['config']['seed'] = seed
    for stage in ('pretrained', 'finetuned', 'pretrained_val', 'finetuned_val'):
        rep = m.get(stage)
        if not isinstance(rep, dict): continue
        for k in AFFINE_KEYS:   # means, minima and accuracy (a prior-weighted mean) commute with an increasing affine map
            if k in rep: rep[k] = 1 - f*(1 - rep[k])
        r = np.array([1 - f*(1 - x) for x in rep['recalls']])
        rf = np.maximum(r, 1/(100*len(r)))                   # the recall floor of G- and H-mean
        rep.update(recalls=r.tolist(), g_mean=float(np.exp(np.log(rf).mean())), h_mean=float(len(r)/(1/rf).sum()))
    return m

@pytest.fixture(scope='module')
def report(smoke_sweep, tmp_path_factory):
    import papermill as pm
    tmp = tmp_path_factory.mktemp('report')
    runs = tmp/'runs'/'smoke'
    shutil.copytree(smoke_sweep.runs/'smoke', runs, ignore=shutil.ignore_patterns('*.pt'))
    for d in [d for d in runs.iterdir() if (d/'metrics.json').exists()]:
        assert d.name.endswith('__seed=0')
        for seed in (1, 2):
            (runs/d.name.replace('__seed=0', f'__seed={seed}')).mkdir()
            (runs/d.name.replace('__seed=0', f'__seed={seed}')/'metrics.json').write_text(
                json.dumps(as_seed(json.loads((d/'metrics.json').read_text()), seed)))
    pm.execute_notebook(str(NBS/'report.ipynb'), str(tmp/'report.ipynb'), kernel_name='python3', progress_bar=False,
                        parameters=dict(runs_dir=str(tmp/'runs'), tiny_sweep=False, out_dir=str(tmp/'tables')), cwd=str(NBS))
    raw = [json.loads(f.read_text()) for f in sorted((tmp/'runs').rglob('metrics.json'))]
    tables = {p.stem: list(csv.DictReader(p.open())) for p in (tmp/'tables').glob('*.csv')}
    return tmp, raw, tables

def by_seed(raw, objective, metric, policy='selmix', s=10.0, stage='finetuned', method='selmix')->dict:
    "seed -> the value of one setting's runs, read from the metrics.json files."
    out = {}
    for m in raw:
        c = m['config']
        if (c['objective'], c['policy'], c.get('method', 'selmix')) == (objective, policy, method) and math.isclose(float(c['s']), s):
            assert c['seed'] not in out
            out[c['seed']] = m[stage][metric]
    return out

def mean(d:dict)->float: return 100*statistics.mean(d.values())

def test_the_sweep_really_ran(smoke_sweep):
    "Each run's recorded test recalls are those of its saved model (pre-trained: the sweep's checkpoint), recomputed with sklearn."
    from selmix.data import load_benchmark
    from selmix.models import get_model, predict
    from selmix.pretrain import load_pretrained
    runs = {d: json.loads((d/'metrics.json').read_text()) for d in (smoke_sweep.runs/'smoke').iterdir() if (d/'metrics.json').exists()}
    raw = list(runs.values())
    assert len(raw) == 5   # the smoke grid
    assert {m['config']['seed'] for m in raw} == {0}
    assert {(m['config']['objective'], m['config']['method'], m['config']['policy']) for m in raw} == {
        ('min_recall', 'selmix', 'selmix'), ('mean_recall', 'selmix', 'selmix'), ('min_recall', 'selmix', 'uniform'),
        ('min_recall', 'cost_sensitive', 'selmix'), ('min_recall', 'plugin', 'selmix')}
    trained = [m for m in raw if m['config']['method'] != 'plugin']
    assert all(m['config']['finetune_steps'] == 20 and m['history'][-1]['step'] == 20 for m in trained)
    plug = next(m for m in raw if m['config']['method'] == 'plugin')
    assert plug['history'] == [] and len(plug['plugin']['G']) == len(plug['finetuned']['recalls'])   # no training, a K×K rule
    bench = load_benchmark('mnist_lt', seed=0)
    y, K = bench.test.y.numpy(), bench.num_classes
    def logits(model): return predict(model.eval(), bench.test, bench.prepare, 'cpu').double()
    def same(rep, pred):
        r = recall_score(y, pred, average=None, labels=range(K), zero_division=0)
        np.testing.assert_allclose(rep['recalls'], r, atol=1e-12)
        assert math.isclose(rep['min_recall'], r.min(), abs_tol=1e-12)
        assert math.isclose(rep['mean_recall'], balanced_accuracy_score(y, pred), abs_tol=1e-12)
    pre = load_pretrained(Path(smoke_sweep.record['jobs'][0]['result']['checkpoint'])/'final.pt', 'cpu')
    pre_pred = logits(pre).argmax(1).numpy()
    for d, m in runs.items():
        assert m['config']['split_hash'] == bench.split_hash                      # the test split recomputed here is the run's
        same(m['pretrained'], pre_pred)
        ck = torch.load(d/'model.pt', weights_only=False)
        model = get_model(ck['arch'], ck['num_classes'], ck['in_channels'])
        model.load_state_dict(ck['model'])
        z = logits(model)
        if m['config']['method'] == 'plugin':                                     # the rule argmax_j (p(x)ᵀG)_j on the pre-trained model
            same(m['finetuned'], (torch.softmax(z, 1) @ torch.tensor(m['plugin']['G'], dtype=torch.float64)).argmax(1).numpy())
        else: same(m['finetuned'], z.argmax(1).numpy())

def test_table2_is_the_mean_over_seeds(report):
    _, raw, t = report
    rows = {(r['method'], r['column']): r for r in t['table2']}
    v, w = by_seed(raw, 'min_recall', 'min_recall'), by_seed(raw, 'mean_recall', 'mean_recall')
    assert sorted(v) == sorted(w) == [0, 1, 2] and len(set(v.values())) == 3   # three seeds, three different values
    r = rows[('selmix', 'Min Rec.')]                                            # the baselines' min-recall runs are not pooled in
    assert int(r['n']) == 3 and math.isclose(_f(r['mean']), mean(v), rel_tol=1e-9)
    assert math.isclose(_f(r['std']), 100*statistics.stdev(v.values()), rel_tol=1e-9)
    assert math.isclose(_f(rows[('selmix', 'Mean Rec.')]['mean']), mean(w), rel_tol=1e-9)
    assert math.isnan(_f(rows[('selmix', 'HM')]['mean']))      # h_mean was not in the sweep: missing, not invented
    assert math.isnan(_f(r['paper']))                          # mnist_lt is not in the paper
    pre = {}
    for m in raw: pre.setdefault(m['config']['seed'], set()).add(m['pretrained']['min_recall'])
    assert all(len(x) == 1 for x in pre.values())                # the runs of one seed share one pre-trained model
    pre = {k: x.pop() for k, x in pre.items()}
    assert int(rows[('pretrained', 'Min Rec.')]['n']) == 3
    assert math.isclose(_f(rows[('pretrained', 'Min Rec.')]['mean']), mean(pre), rel_tol=1e-9)
    paired = {r['column']: r for r in t['table2_paired']}['Min Rec.']
    d = [100*(v[k] - pre[k]) for k in sorted(v)]
    ci = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert paired['n'] == '3' and math.isclose(_f(paired['diff']), statistics.mean(d), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(_f(paired['lo']), ci.low, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(_f(paired['hi']), ci.high, rel_tol=1e-6, abs_tol=1e-9)

def test_baselines_are_paired_with_selmix(report):
    "report.ipynb checks each baseline's paired difference and interval itself; here its value and the headline's pick."
    _, raw, t = report
    b = {(r['objective'], r['method']): r for r in t['baselines']}
    assert {m for o, m in b if o == 'min_recall'} == {'pretrained', 'plugin', 'cost_sensitive'}
    x = {meth: by_seed(raw, 'min_recall', 'min_recall', method=meth) for meth in ('plugin', 'cost_sensitive')}
    for meth, v in x.items():
        assert len(v) == 3 and math.isclose(_f(b[('min_recall', meth)]['value']), mean(v), rel_tol=1e-9)
    head = {r['column']: r for r in t['headline']}
    assert head['Min Rec.']['best_baseline'] == max(x, key=lambda meth: mean(x[meth]))

def test_policy_and_diagonal_tables(report):
    _, raw, t = report
    k2 = {(r['policy'], r['objective'], r['metric']): r for r in t['table_k2']}['uniform', 'min_recall', 'min_recall']
    u = by_seed(raw, 'min_recall', 'min_recall', policy='uniform')
    assert int(k2['n']) == 3 and math.isclose(_f(k2['mean']), mean(u), rel_tol=1e-9)
    assert math.isclose(_f(k2['std']), 100*statistics.stdev(u.values()), rel_tol=1e-9)
    diag = {r['metric']: r for r in t['diagonal']}
    assert set(diag) == {'min_recall', 'mean_recall'}
    for obj, other in [('min_recall', 'mean_recall'), ('mean_recall', 'min_recall')]:
        own, oth = by_seed(raw, obj, obj), by_seed(raw, other, obj)
        want = 100*statistics.mean(own[k] - oth[k] for k in own)
        assert math.isclose(_f(diag[obj]['diff']), want, rel_tol=1e-9, abs_tol=1e-9) and diag[obj]['best_other'] == other

def test_report_notebook_shows_the_findings(report):
    tmp, raw, _ = report
    nb = json.loads((tmp/'report.ipynb').read_text())
    text = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert f"**{len(raw)} runs**" in text and 'Table K.3 diagonal' in text and 'Table K.2' in text and 'SelMix vs plugin' in text
    assert sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', [])) >= 3
