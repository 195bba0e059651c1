"nbs/report.ipynb on the output of a tiny REAL sweep (the `smoke` grid: five real runs of nbs/run.ipynb, two of them baselines)."
import csv, json, math, statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'

def _f(x): return float(x) if x not in ('', None) else math.nan

@pytest.fixture(scope='module')
def report(tmp_path_factory):
    import papermill as pm
    tmp = tmp_path_factory.mktemp('report')
    pm.execute_notebook(str(NBS/'report.ipynb'), str(tmp/'report.ipynb'), kernel_name='python3', progress_bar=False,
                        parameters=dict(runs_dir=str(tmp/'runs'), tiny_sweep=True, out_dir=str(tmp/'tables')),
                        cwd=str(NBS))
    raw = [json.loads(f.read_text()) for f in (tmp/'runs').rglob('metrics.json')]
    tables = {p.stem: list(csv.DictReader(p.open())) for p in (tmp/'tables').glob('*.csv')}
    return tmp, raw, tables

def _values(raw, objective, metric, policy='selmix', s=10.0, stage='finetuned', method='selmix'):
    return [m[stage][metric] for m in raw if m['config']['objective'] == objective and m['config']['policy'] == policy
            and m['config'].get('method', 'selmix') == method and math.isclose(float(m['config']['s']), s)]

def test_the_sweep_really_ran(report):
    tmp, raw, _ = report
    assert len(raw) == 5   # the smoke grid
    for m in raw:          # each metrics.json is a real report: its summaries agree with its own per-class recalls
        for stage in ('pretrained', 'finetuned'):
            r = m[stage]['recalls']
            assert math.isclose(m[stage]['mean_recall'], statistics.mean(r), rel_tol=1e-9)
            assert math.isclose(m[stage]['min_recall'], min(r), rel_tol=1e-9)
            assert math.isclose(sum(m[stage]['coverages']), 1, rel_tol=1e-6)
    assert {m['config']['seed'] for m in raw} == {0}
    assert {(m['config']['objective'], m['config']['method'], m['config']['policy']) for m in raw} == {
        ('min_recall', 'selmix', 'selmix'), ('mean_recall', 'selmix', 'selmix'), ('min_recall', 'selmix', 'uniform'),
        ('min_recall', 'cost_sensitive', 'selmix'), ('min_recall', 'plugin', 'selmix')}
    trained = [m for m in raw if m['config']['method'] != 'plugin']
    assert all(m['config']['finetune_steps'] == 20 and m['history'][-1]['step'] == 20 for m in trained)
    plug = next(m for m in raw if m['config']['method'] == 'plugin')
    assert plug['history'] == [] and len(plug['plugin']['G']) == len(plug['finetuned']['recalls'])   # no training, a K×K rule

def test_table2_is_the_mean_over_seeds(report):
    _, raw, t = report
    rows = {(r['method'], r['column']): r for r in t['table2']}
    v = _values(raw, 'min_recall', 'min_recall')
    assert len(v) == 1 and int(rows[('selmix', 'Min Rec.')]['n']) == 1   # the baselines' min-recall runs are not pooled in
    assert math.isclose(_f(rows[('selmix', 'Min Rec.')]['mean']), 100*v[0], rel_tol=1e-9)
    assert math.isnan(_f(rows[('selmix', 'Min Rec.')]['std']))   # one seed: no std
    w = _values(raw, 'mean_recall', 'mean_recall')
    assert math.isclose(_f(rows[('selmix', 'Mean Rec.')]['mean']), 100*w[0], rel_tol=1e-9)
    assert math.isnan(_f(rows[('selmix', 'HM')]['mean']))      # h_mean was not in the sweep: missing, not invented
    assert math.isnan(_f(rows[('selmix', 'Min Rec.')]['paper']))   # mnist_lt is not in the paper
    pre = {}
    for m in raw: pre.setdefault(m['config']['seed'], []).append(m['pretrained']['min_recall'])
    assert all(max(v) - min(v) < 1e-12 for v in pre.values())   # the runs of one seed share one pre-trained model
    pre = {k: v[0] for k, v in pre.items()}
    assert math.isclose(_f(rows[('pretrained', 'Min Rec.')]['mean']), 100*statistics.mean(pre.values()), rel_tol=1e-9)
    paired = {r['column']: r for r in t['table2_paired']}
    assert math.isclose(_f(paired['Min Rec.']['diff']), 100*(v[0] - pre[0]), rel_tol=1e-9, abs_tol=1e-9)
    assert paired['Min Rec.']['n'] == '1' and math.isnan(_f(paired['Min Rec.']['lo']))   # one seed: no interval

def test_baselines_are_paired_with_selmix(report):
    _, raw, t = report
    b = {(r['objective'], r['method']): r for r in t['baselines']}
    assert {m for o, m in b if o == 'min_recall'} == {'pretrained', 'plugin', 'cost_sensitive'}
    sel = _values(raw, 'min_recall', 'min_recall')[0]
    for meth in ('plugin', 'cost_sensitive'):
        x = _values(raw, 'min_recall', 'min_recall', method=meth)[0]
        assert math.isclose(_f(b[('min_recall', meth)]['value']), 100*x, rel_tol=1e-9)
        assert math.isclose(_f(b[('min_recall', meth)]['diff']), 100*(sel - x), rel_tol=1e-9, abs_tol=1e-9)
    head = {r['column']: r for r in t['headline']}
    best = max(('plugin', 'cost_sensitive'), key=lambda m: _values(raw, 'min_recall', 'min_recall', method=m)[0])
    assert head['Min Rec.']['best_baseline'] == best

def test_policy_and_diagonal_tables(report):
    _, raw, t = report
    k2 = {(r['policy'], r['objective'], r['metric']): r for r in t['table_k2']}
    u = _values(raw, 'min_recall', 'min_recall', policy='uniform')
    assert math.isclose(_f(k2[('uniform', 'min_recall', 'min_recall')]['mean']), 100*u[0], rel_tol=1e-9)
    assert math.isnan(_f(k2[('uniform', 'min_recall', 'min_recall')]['std']))   # one seed: no std
    diag = {r['metric']: r for r in t['diagonal']}
    assert set(diag) == {'min_recall', 'mean_recall'}
    for obj, other in [('min_recall', 'mean_recall'), ('mean_recall', 'min_recall')]:
        own, oth = _values(raw, obj, obj)[0], _values(raw, other, obj)[0]
        assert math.isclose(_f(diag[obj]['diff']), 100*(own - oth), rel_tol=1e-9, abs_tol=1e-9) and diag[obj]['best_other'] == other

def test_report_notebook_shows_the_findings(report):
    tmp, raw, _ = report
    nb = json.loads((tmp/'report.ipynb').read_text())
    text = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert f"**{len(raw)} runs**" in text and 'Table K.3 diagonal' in text and 'Table K.2' in text and 'SelMix vs plugin' in text
    assert sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', [])) >= 3
