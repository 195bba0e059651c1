"""Tests of selmix.sweep and selmix.results beyond nbs/11_sweep and nbs/12_results (which check the grids, point ids, parameter
parsing, the runner and the tables on small cases): ids that stay distinct, the ready-made grids, the runner's thread
limit and workers, the CLI, the policy table's constrained rows, the paper's values against its text."""
import json, os, re, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import given, strategies as st
from nbformat.v4 import new_code_cell, new_notebook

from selmix.sweep import GRIDS, expand_grid, load_grid, main, point_id, run_sweep
from selmix.results import aggregate, load_runs, paper_results, policy_table, target_metrics
from selmix.core import runs_root
from selmix.metrics import OBJECTIVES


# ---------------------------------------------------------------- grids
points = st.dictionaries(st.sampled_from(['seed', 'objective', 's']),
                         st.one_of(st.integers(0, 3), st.sampled_from(['min_recall', 'h_mean']), st.floats(0.1, 10)),
                         min_size=1, max_size=3)

@given(points, points)
def test_point_id_is_injective_and_order_free(p, q):
    assert point_id(p) == point_id(dict(reversed(list(p.items()))))
    if p != q and {k: repr(v) for k, v in p.items()} != {k: repr(v) for k, v in q.items()}:
        assert point_id(p) != point_id(q)

def test_point_id_rejects_unsafe_values():
    for bad in ['a b', '../x', '']:   # 11_sweep checks 'a/b'
        with pytest.raises(ValueError, match='folder name'): point_id(dict(objective=bad))

def test_ready_made_grids_name_valid_settings():
    from selmix.finetune import POLICIES
    from selmix.run_parts import RUN_METHODS
    from selmix.sweep import SEEDS
    for name, g in GRIDS.items():
        for p in expand_grid(g):
            assert p['objective'] in OBJECTIVES and p.get('policy', 'selmix') in POLICIES, (name, p)
            assert p.get('method', 'selmix') in RUN_METHODS and p.get('s', 1) > 0, (name, p)
            assert 'policy' not in p or p.get('method', 'selmix') == 'selmix', (name, p)   # a baseline draws no pairs
    emb = expand_grid(GRIDS['embedded'])
    assert {p['dataset'] for p in emb} == {'mnist_lt'} and {p['seed'] for p in emb} == set(SEEDS)
    assert {p.get('policy') for p in emb} == {'selmix', 'uniform', 'greedy', None} and len({p['s'] for p in emb if 's' in p}) >= 3
    assert {p.get('method', 'selmix') for p in emb} == set(RUN_METHODS)   # every baseline beside SelMix
    t2 = expand_grid(GRIDS['paper_table2'])
    assert {(p['dataset'], p['objective']) for p in t2} >= {('cifar10_lt', 'min_recall'), ('cifar100_lt', 'min_ht_recall')}

def test_load_grid_refuses_a_yaml_that_is_no_grid(tmp_path):
    (tmp_path/'bad.yaml').write_text('just a string\n')
    with pytest.raises(ValueError, match='mapping'): load_grid(str(tmp_path/'bad.yaml'))

def test_runs_root_does_not_depend_on_cwd(tmp_path, monkeypatch):
    from selmix.core import data_root
    a = runs_root(); monkeypatch.chdir(tmp_path); b = runs_root()
    assert a == b == Path(data_root()).resolve().parent/'runs'

# ---------------------------------------------------------------- the runner, on a stand-in notebook
def _echo_notebook(path):
    "A notebook with the runner's contract (parameters seed/out_dir, writes metrics.json) that fails for seed 13."
    nb = new_notebook(cells=[
        new_code_cell("seed = 0\nout_dir = '.'", metadata=dict(tags=['parameters'])),
        new_code_cell("if seed == 13: raise KeyError('bad luck')"),
        new_code_cell("import json, pathlib, os\npathlib.Path(out_dir, 'metrics.json').write_text(json.dumps("
                      "dict(config=dict(seed=seed, omp=os.environ.get('OMP_NUM_THREADS')), finetuned={})))")],
        metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))
    nbformat.write(nb, path); return path

def test_run_sweep_skips_done_and_lists_failures(tmp_path):
    nb = _echo_notebook(tmp_path/'echo.ipynb')
    env = os.environ.get('OMP_NUM_THREADS')
    res = run_sweep(dict(seed=[1, 13]), name='t', runs_dir=tmp_path, notebook=nb, progress=False, workers=2)
    assert os.environ.get('OMP_NUM_THREADS') == env   # the thread limit is only for the kernels
    assert res.done == ['seed=1'] and [f['id'] for f in res.failed] == ['seed=13']
    assert res.failed[0]['error'] == "KeyError: 'bad luck'"
    assert (tmp_path/'t'/'seed=13'/'error.txt').read_text().strip() == "KeyError: 'bad luck'"
    m = json.loads((tmp_path/'t'/'seed=1'/'metrics.json').read_text())
    assert m['config'] == dict(seed=1, omp=str(max(1, os.cpu_count()//2)))   # the cores are shared between the kernels
    assert json.loads((tmp_path/'t'/'sweep.json').read_text())['failed'][0]['id'] == 'seed=13'
    # a second sweep skips the completed point
    res2 = run_sweep(dict(seed=[1]), name='t', runs_dir=tmp_path, notebook=nb, progress=False)
    assert res2.skipped == ['seed=1'] and res2.done == [] and res2.failed == []

def test_run_sweep_checks_parameter_names_first(tmp_path):
    nb = _echo_notebook(tmp_path/'echo.ipynb')
    with pytest.raises(ValueError, match=r"\['sed'\]"): run_sweep(dict(sed=[0]), runs_dir=tmp_path, notebook=nb)
    with pytest.raises(ValueError, match='workers'): run_sweep(dict(seed=[0]), runs_dir=tmp_path, notebook=nb, workers=0)
    assert not any(tmp_path.rglob('metrics.json'))

def test_cli_list():
    out = subprocess.run([sys.executable, '-m', 'selmix.sweep', 'policies', '--list', '--param', 'seed=4'],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 3*3 and all('seed=4' in o and 'dataset=cifar10_lt' in o for o in out)
    assert main(['smoke', '--list']) == 0
    assert len(expand_grid(GRIDS['smoke'])) == 5

# ---------------------------------------------------------------- aggregation
def _report(rng, K=4):
    r = rng.uniform(0.05, 1, K); cov = rng.dirichlet(np.ones(K))
    return dict(mean_recall=r.mean(), min_recall=r.min(), g_mean=float(np.exp(np.log(r).mean())),
                h_mean=float(K/(1/r).sum()), min_ht_recall=r.min(), min_coverage=cov.min(), min_ht_coverage=cov.min(),
                accuracy=r.mean(), recalls=r.tolist(), coverages=cov.tolist())

@pytest.fixture
def fake_runs(tmp_path):
    "Random (not published) metrics.json files in the shape run.ipynb writes, to check the pandas plumbing."
    rng, raw = np.random.default_rng(0), []
    for seed in range(3):
        pre = _report(rng)
        for obj, pol, s in [('min_recall', 'selmix', 10.), ('mean_recall', 'selmix', 10.), ('min_recall', 'uniform', 10.),
                            ('mean_recall_min_coverage', 'selmix', 10.), ('min_recall', 'selmix', 1.)]:
            if obj == 'mean_recall' and seed == 2: continue   # a missing seed
            d = tmp_path/point_id(dict(objective=obj, policy=pol, s=s, seed=seed)); d.mkdir()
            m = dict(config=dict(dataset='cifar10_lt', objective=obj, policy=pol, s=s, seed=seed), pretrained=pre,
                     finetuned=_report(rng), history=[])
            (d/'metrics.json').write_text(json.dumps(m)); raw.append(m)
    return tmp_path, raw

def test_policy_table(fake_runs):
    "12_results checks a K.2 mean and its paper value; here the rows of a constrained objective."
    root, _ = fake_runs
    k2 = policy_table(load_runs(root)).set_index(['policy', 'objective', 'metric'])
    assert ('selmix', 'mean_recall_min_coverage', 'min_coverage') in k2.index   # both metrics of the constrained one
    assert ('selmix', 'min_recall', 'mean_recall') not in k2.index
    assert target_metrics('h_mean_min_ht_coverage') == ['h_mean', 'min_ht_coverage']

def test_aggregate_empty():
    import pandas as pd
    assert aggregate(pd.DataFrame(), ['objective']).empty

# ---------------------------------------------------------------- the paper's values
def test_paper_values_are_consistent():
    "12_results checks the number of values and that K.3's diagonal is Table 2's SelMix row; here the units and K.2."
    p = paper_results()
    assert set(p.table) == {'2', '3', 'K.2', 'K.3'} and p.value.notna().all()
    cov = p.metric.str.contains('coverage')
    assert (p[cov].value < 0.2).all() and (p[~cov].value <= 100).all()
    t2 = p[(p.table == '2') & (p.dataset == 'cifar10_lt') & (p.method == 'selmix')]
    t2 = t2[t2.objective == t2.metric].set_index('metric')   # the unconstrained columns
    k2 = p[(p.table == 'K.2') & (p.method == 'selmix') & (p.objective == 'min_recall')]
    assert k2.value.item() == t2.loc['min_recall', 'value']

# The SelMix rows of Tables 2 and 3 as a PDF-to-text extraction of the paper prints them (mean glued to std,
# "85.40.1" = 85.4 ± 0.1), with two rows of other tables that must not match (they print " / " with spaces).
PAPER_TEXT = """\
Table 2 ... FixMatch (LA) w/SelMix (Ours) 85.40.1 79.10.1 85.10.1 85.30.1 85.70.2/0.0951e-3 59.80.2 57.80.5 53.80.5 56.70.4 59.60.5/0.00985e-5
Table 3 ... MiSLAS w/ SelMix (Ours) 83.30.2 79.20.7 82.60.5 82.80.3 82.80.2/0.0950.002 48.30.1 41.31.4 38.20.8 42.30.5 47.80.2/0.00952e-4
w/SelMix (Ours) 81.30.5 74.31.2 81.00.8 80.90.5 81.70.8 / 0.0913e-3 91.41.2 84.70.7 91.31.1 91.31.2 91.41.2 / 0.0961e-3
w/SelMix (Ours) 80.90.5 68.51.8 79.11.2 80.10.4 79.11.2 / 0.0881e-3 80.90.1 / 0.0881e-3
"""

def _selmix_rows(text):
    num = r'(\d+\.\d)(\d+\.\d)'
    return re.findall(r'w/\s?SelMix \(Ours\) ' + ' '.join([num]*4) + r' (\d+\.\d)(\d+\.\d)/\S+ ' + ' '.join([num]*4)
                      + r' (\d+\.\d)(\d+\.\d)/', text)

def _check_transcription(p, rows):
    assert len(rows) == 2   # Table 2 and Table 3
    cols10 = ['mean_recall', 'min_recall', 'h_mean', 'g_mean', 'mean_recall']
    cols100 = ['mean_recall', 'min_ht_recall', 'h_mean', 'g_mean', 'mean_recall']
    for table, row in zip(['2', '3'], rows):
        vals = [float(x) for x in row]
        for ds, cols, off in [('cifar10_lt', cols10, 0), ('cifar100_lt', cols100, 10)]:
            q = p[(p.table == table) & (p.dataset == ds) & (p.method == 'selmix')]
            for i, m in enumerate(cols):
                obj = m if i < 4 else ('mean_recall_min_coverage' if ds == 'cifar10_lt' else 'mean_recall_min_ht_coverage')
                r = q[(q.objective == obj) & (q.metric == m)]
                assert (r.value.item(), r['std'].item()) == (vals[off + 2*i], vals[off + 2*i + 1]), (table, ds, m)

def test_paper_values_against_the_extracted_text():
    "Re-read the SelMix rows of Tables 2 and 3 from the paper's text with a regex, independently of the transcription."
    p = paper_results()
    _check_transcription(p, _selmix_rows(PAPER_TEXT))
    # the check catches a transcription error: one std changed in Table 3's CIFAR-100 row
    bad = p.copy()
    i = bad.index[(bad.table == '3') & (bad.dataset == 'cifar100_lt') & (bad.method == 'selmix') & (bad.metric == 'h_mean')]
    bad.loc[i, 'std'] = 0.9
    with pytest.raises(AssertionError): _check_transcription(bad, _selmix_rows(PAPER_TEXT))
