"nbs/report.ipynb on the output of a tiny REAL sweep (the `smoke` grid: three real runs of nbs/run.ipynb)."
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

def _values(raw, objective, metric, policy='selmix', s=10.0, stage='finetuned'):
    return [m[stage][metric] for m in raw if m['config']['objective'] == objective and m['config']['policy'] == policy
            and math.isclose(float(m['config']['s']), s)]

def test_the_sweep_really_ran(report):
    tmp, raw, _ = report
    assert len(raw) == 3   # the smoke grid
    for m in raw:          # each metrics.json is a real report: its summaries agree with its own per-class recalls
        for stage in ('pretrained', 'finetuned'):
            r = m[stage]['recalls']
            assert math.isclose(m[stage]['mean_recall'], statistics.mean(r), rel_tol=1e-9)
            assert math.isclose(m[stage]['min_recall'], min(r), rel_tol=1e-9)
            assert math.isclose(sum(m[stage]['coverages']), 1, rel_tol=1e-6)
    assert {m['config']['seed'] for m in raw} == {0}
    assert {(m['config']['objective'], m['config']['policy']) for m in raw} == {
        ('min_recall', 'selmix'), ('mean_recall', 'selmix'), ('min_recall', 'uniform')}
    assert all(m['config']['finetune_steps'] == 20 and m['history'][-1]['step'] == 20 for m in raw)

def test_table2_is_the_mean_over_seeds(report):
    _, raw, t = report
    rows = {(r['method'], r['column']): r for r in t['table2']}
    v = _values(raw, 'min_recall', 'min_recall')
    assert len(v) == 1 and int(rows[('selmix', 'Min Rec.')]['n']) == 1
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

def test_policy_and_diagonal_tables(report):
    _, raw, t = report
    k2 = {(r['policy'], r['objective'], r['metric']): r for r in t['table_k2']}
    u = _values(raw, 'min_recall', 'min_recall', policy='uniform')
    assert math.isclose(_f(k2[('uniform', 'min_recall', 'min_recall')]['mean']), 100*u[0], rel_tol=1e-9)
    assert math.isnan(_f(k2[('uniform', 'min_recall', 'min_recall')]['std']))   # one seed: no std
    diag = {r['objective']: r for r in t['diagonal']}
    assert set(diag) == {'min_recall', 'mean_recall'}
    for obj, other in [('min_recall', 'mean_recall'), ('mean_recall', 'min_recall')]:
        own, oth = statistics.mean(_values(raw, obj, obj)), statistics.mean(_values(raw, other, obj))
        assert (diag[obj]['wins'] == 'True') == (own >= oth)

def test_report_notebook_shows_the_findings(report):
    tmp, raw, _ = report
    nb = json.loads((tmp/'report.ipynb').read_text())
    text = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert f"**{len(raw)} fine-tuning runs**" in text and 'Table K.3 diagonal' in text and 'Table K.2 policies' in text
    assert sum('image/png' in o.get('data', {}) for c in nb['cells'] for o in c.get('outputs', [])) >= 3
