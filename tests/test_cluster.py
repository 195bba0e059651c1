"""Cluster sweeps through submitit: the real `smoke` grid through submitit's local executor (one process per job, the
shared pre-training as its own job first), the debug executor's failure paths, and the Slurm parameters and sbatch
scripts of the paper's grids, rendered without a cluster."""
import json, os
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

import selmix.sweep as S
from selmix.sweep import (GRIDS, SEEDS, expand_grid, job_resources, main, plan_sweep, run_sweep, sbatch_script,
                          slurm_parameters)


# ---------------------------------------------------------------- the real smoke grid, submitit's local executor
def test_smoke_grid_through_submitit_local(smoke_sweep, monkeypatch):
    "The sweep itself runs once, in the `smoke_sweep` fixture of conftest.py (tests/test_report.py reports on its runs)."
    monkeypatch.setenv('SELMIX_DATA', str(smoke_sweep.root))
    res, runs, rec = smoke_sweep.result, smoke_sweep.runs, smoke_sweep.record
    assert res.failed == [] and sorted(res.done) == sorted(S.point_id(p) for p in expand_grid(GRIDS['smoke']))
    assert rec['executor'] == 'submitit-local' and len(rec['jobs']) == 1         # one shared pre-training job
    pre = rec['jobs'][0]
    assert pre['kind'] == 'pretrain' and pre['state'] == 'COMPLETED' and Path(pre['stdout']).exists()
    for pid, t in rec['points'].items():                                        # every run: its own job, after the pre-training
        assert t['state'] == 'COMPLETED' and t['after'] == pre['job'] and Path(t['stderr']).parent.exists()
        m = json.loads((runs / 'smoke' / pid / 'metrics.json').read_text())
        assert m['config']['pretrain_hash'] == pre['result']['pretrain_hash']    # the runs used that checkpoint
    assert len({t['job_id'] for t in rec['points'].values()} | {pre['job_id']}) == 1 + len(expand_grid(GRIDS['smoke']))
    final = torch.load(Path(pre['result']['checkpoint']) / 'final.pt', weights_only=False)
    assert final['trained_by']['pid'] == pre['result']['pid']                    # trained by the job, not by a run
    again = run_sweep('smoke', executor='submitit-local', runs_dir=runs, workers=3)   # resubmission
    assert sorted(again.skipped) == sorted(res.done) and again.done == [] and again.failed == []
    rec2 = json.loads((runs / 'smoke' / 'sweep.json').read_text())
    assert rec2['jobs'] == [] and rec2['points'] == {}                          # nothing was submitted


# ---------------------------------------------------------------- the debug executor: order and failures
def _notebook(path):
    "A stand-in run notebook with the parameters that decide the pre-training; fails for objective 'bad'."
    nb = new_notebook(cells=[
        new_code_cell("dataset = 'mnist_lt'\nseed = 0\nobjective = 'x'\nout_dir = '.'", metadata=dict(tags=['parameters'])),
        new_code_cell("if objective == 'bad': raise KeyError('bad objective')"),
        new_code_cell("import json, pathlib, time\npathlib.Path(out_dir, 'metrics.json').write_text(json.dumps("
                      "dict(config=dict(objective=objective, t=time.time()), finetuned={})))")],
        metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))
    nbformat.write(nb, path); return path


def test_debug_executor_waits_for_the_shared_pretraining(tmp_path, monkeypatch):
    nb, calls = _notebook(tmp_path / 'nb.ipynb'), []
    monkeypatch.setattr(S.PretrainJob, '__call__', lambda self, point, notebook=None, threads=None:
                        calls.append(__import__('time').time()) or dict(pretrain_hash='h', pid=os.getpid()))
    grid = [dict(objective=['a', 'bad'], seed=0), dict(objective='a', seed=[1, 2])]   # seed 0 shares a pre-training
    res = run_sweep(grid, name='g', runs_dir=tmp_path, notebook=nb, executor='debug', workers=2)
    assert len(calls) == 1 and sorted(res.done) == ['objective=a__seed=0', 'objective=a__seed=1', 'objective=a__seed=2']
    assert [f['id'] for f in res.failed] == ['objective=bad__seed=0']
    rec = json.loads((tmp_path / 'g' / 'sweep.json').read_text())
    assert rec['points']['objective=a__seed=0']['after'] == rec['jobs'][0]['job']          # seed 0's runs wait for it
    assert rec['points']['objective=a__seed=1']['after'] is None                           # a lone point pre-trains itself
    assert all("KeyError: 'bad objective'" in f['error'] and f['log'] for f in res.failed)
    assert "(log: " in res.summary()
    first_run = min(json.loads((tmp_path / 'g' / d / 'metrics.json').read_text())['config']['t'] for d in res.done[:1])
    assert max(calls) < first_run                                        # pre-training ended before any run started


def test_a_failed_pretraining_fails_its_runs_with_its_log(tmp_path, monkeypatch):
    nb = _notebook(tmp_path / 'nb.ipynb')
    def boom(self, point, notebook=None, threads=None): raise RuntimeError('CUDA error: no kernel image')
    monkeypatch.setattr(S.PretrainJob, '__call__', boom)
    res = run_sweep(dict(objective=['a', 'b']), name='g', runs_dir=tmp_path, notebook=nb, executor='debug')
    assert res.done == [] and len(res.failed) == 2
    rec = json.loads((tmp_path / 'g' / 'sweep.json').read_text())
    assert rec['jobs'][0]['state'] == 'FAILED' and 'no kernel image' in rec['jobs'][0]['error']
    for f in res.failed:
        assert 'pre-training job' in f['error'] and 'no kernel image' in f['error'] and f['log'] == rec['jobs'][0]['stderr']
        assert rec['points'][f['id']]['state'] == 'NOT RUN' and not (tmp_path / 'g' / f['id'] / 'metrics.json').exists()


def test_local_executor_rejects_cluster_options(tmp_path):
    with pytest.raises(ValueError, match='cluster executors'): run_sweep('smoke', runs_dir=tmp_path, gpus=1)
    with pytest.raises(ValueError, match='executor'): run_sweep('smoke', runs_dir=tmp_path, executor='lsf')
    with pytest.raises(SystemExit): main(['smoke', '--gpus', '1'])


# ---------------------------------------------------------------- Slurm parameters, without a cluster
def test_paper_table2_plan_and_slurm_parameters(tmp_path):
    plan = plan_sweep('paper_table2', runs_dir=tmp_path, partition='gpu', time=240)
    pre, fin = [j for j in plan.jobs if j.kind == 'pretrain'], [j for j in plan.jobs if j.kind == 'finetune']
    n = 2 * len(SEEDS)                                                   # (dataset, seed) pairs
    assert len(pre) == len(fin) == n and all(j.size == 5 for j in fin) and sum(j.size for j in fin) == 10 * len(SEEDS)
    for j in fin:   # each array waits for the pre-training of its own dataset and seed
        p = next(x for x in pre if x.name == j.after)
        assert {(q['dataset'], q['seed']) for q in j.points} == {(p.points[0]['dataset'], p.points[0]['seed'])}
    subs = plan.submissions()
    assert [len(s) for s in subs] == [n] + [1] * n                       # one pre-training array, n fine-tuning arrays
    kw = slurm_parameters(subs[1], dependency='4242_3')
    assert (kw['gpus_per_node'], kw['timeout_min'], kw['slurm_partition'], kw['tasks_per_node']) == (1, 240, 'gpu', 1)
    assert kw['slurm_additional_parameters'] == {'dependency': 'afterok:4242_3'}
    assert slurm_parameters(subs[0])['slurm_additional_parameters'] == {}   # reset: no dependency left from a previous array
    import submitit   # submitit itself accepts these names (it validates slurm_* parameters on any executor)
    submitit.AutoExecutor(folder=tmp_path / 'x', cluster='debug').update_parameters(**kw)
    s0 = sbatch_script(subs[0], tmp_path / 'jobs')
    lines = set(s0.splitlines())
    assert {f'#SBATCH --array=0-{n - 1}%{n}', '#SBATCH --gpus-per-node=1', '#SBATCH --time=2880', '#SBATCH --partition=gpu',
            '#SBATCH --cpus-per-task=8', '#SBATCH --mem=32GB'} <= lines and not any('dependency' in l for l in lines)
    s1 = sbatch_script(subs[1], tmp_path / 'jobs', dependency='4242_3')
    assert {'#SBATCH --array=0-4%5', '#SBATCH --time=240', '#SBATCH --dependency=afterok:4242_3'} <= set(s1.splitlines())


def test_embedded_is_cpu_only_and_imagenet_pretrains_on_4_gpus(tmp_path):
    plan = plan_sweep('smoke', runs_dir=tmp_path)
    assert [j.kind for j in plan.jobs] == ['pretrain', 'finetune'] and plan.jobs[1].size == 5
    s = sbatch_script([plan.jobs[1]], tmp_path / 'jobs', dependency='1_0')
    assert 'gpus' not in s and '#SBATCH --array=0-4%5' in s and '#SBATCH --time=60' in s
    r = job_resources('imagenet_lt', 'pretrain')
    assert (r['gpus'], r['tasks']) == (4, 4)
    assert '#SBATCH --ntasks-per-node=4' in sbatch_script([S.ClusterJob('p', 'pretrain', [{}], [None], r)], tmp_path)


def test_plan_cli_prints_scripts_and_submits_nothing(tmp_path, capsys):
    assert main(['paper_table2', '--executor', 'slurm', '--plan', '--partition', 'a100', '--runs-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count('#!/bin/bash') == 1 + 2 * len(SEEDS) and '#SBATCH --partition=a100' in out
    assert not (tmp_path / 'paper_table2').exists()


def test_slurm_submission_with_a_fake_sbatch(tmp_path, monkeypatch):
    "The real Slurm path of submitit against stand-in `sbatch`/`srun`: the scripts it submits carry the dependencies."
    bin_ = tmp_path / 'bin'; bin_.mkdir()
    (bin_ / 'srun').write_text('#!/bin/sh\nexit 0\n')
    (bin_ / 'sbatch').write_text('#!/bin/sh\nn=$(cat "$0.n" 2>/dev/null || echo 100); echo $((n + 1)) > "$0.n"\n'
                                 'cp "$1" "$(dirname "$0")/submitted_$n.sh"\necho "Submitted batch job $n"\n')
    for f in ('srun', 'sbatch'): (bin_ / f).chmod(0o755)
    monkeypatch.setenv('PATH', f"{bin_}:{os.environ['PATH']}")
    res = run_sweep('smoke', executor='slurm', runs_dir=tmp_path / 'runs', partition='cpu')
    n_pts = len(expand_grid(GRIDS['smoke']))
    assert res.done == [] and res.failed == [] and len(res.submitted) == n_pts and 'resubmit' in res.summary()
    scripts = [(bin_ / f'submitted_{n}.sh').read_text() for n in (100, 101)]
    assert '#SBATCH --partition=cpu' in scripts[0] and 'dependency' not in scripts[0]      # the pre-training
    assert '#SBATCH --dependency=afterok:100' in scripts[1] and '#SBATCH --array=0-4%5' in scripts[1]
    rec = json.loads((tmp_path / 'runs' / 'smoke' / 'sweep.json').read_text())
    assert rec['jobs'][0]['job_id'] == '100' and {t['job_id'] for t in rec['points'].values()} == {f'101_{i}' for i in range(n_pts)}
    assert all(t['state'] == 'SUBMITTED' for t in rec['points'].values())
