"Device settings beyond nbs/06_pretrain and nbs/13_bench (which check `device_settings` and the projections by hand): the amp warning and validation, the workloads of the other presets, the `selmix.bench device` CLI."
import warnings
import pytest, torch
from selmix.pretrain import PretrainConfig, _amp_parts

def test_amp_requested_on_cpu_warns_and_is_off():
    with pytest.warns(UserWarning, match='needs a CUDA device'):
        s, scaler = _amp_parts(PretrainConfig(amp=True), torch.device('cpu'), 0)
    assert s['amp'] is False and scaler is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s, scaler = _amp_parts(PretrainConfig(), torch.device('cpu'), 0)   # the default asks nothing: no warning

def test_bad_amp_rejected():
    with pytest.raises(ValueError, match='amp'): PretrainConfig(amp='yes')
    with pytest.raises(ValueError, match='compile'): PretrainConfig(compile=1)


# ---------------------------------------------------------------- `python -m selmix.bench device`
import subprocess, sys
from selmix.bench import preset_workload, bench_device, run_task, TASKS


def test_workload_of_the_presets_by_hand():
    from selmix.pretrain import pretrain_config
    from selmix.finetune import finetune_config
    w = preset_workload('cifar10_lt')
    p, f = pretrain_config('cifar10_lt'), finetune_config('cifar10_lt')
    assert (w['arch'], w['pretrain_steps'], w['finetune_steps']) == ('wrn28_2', p.steps, f.optim.steps)
    assert w['pretrain_images'] == p.batch_size*(1 + 2*p.mu) == 64*15 and w['finetune_images'] == 2*f.optim.batch_size
    from selmix.data import BENCHMARKS
    assert preset_workload('imagenet_lt')['arch'] == 'resnet50' and preset_workload('imagenet_lt')['side'] == 224
    assert preset_workload('stl10_lt')['side'] == BENCHMARKS['stl10_lt'].get('image_size', 96)


def test_bench_device_row_is_consistent_with_its_projection():
    r = bench_device(presets=('cifar10_lt',), repeats=1, max_batch=2, max_images=30, device='cpu', verbose=False)[0]
    assert abs(r['ratio'] - r['data_total']/r['model']) < 1e-9
    assert abs(r['pretrain_s_per_step'] - 960*(1/r['model'] + 1/r['data_total'])) < 1e-9
    assert abs(r['pretrain_hours'] - r['pretrain_steps']*r['pretrain_s_per_step']/3600) < 1e-6
    r2 = bench_device(presets=('cifar10_lt',), repeats=1, max_batch=2, max_images=30, workers=4, device='cpu', verbose=False)[0]
    assert r2['workers'] == 4 and abs(r2['data_total'] - 4*r2['data_per_worker']) < 1e-6


def test_cli_lists_and_runs_device():
    assert 'device' in TASKS
    with pytest.raises(ValueError, match='device'): run_task('nope')
    out = subprocess.run([sys.executable, '-m', 'selmix.bench', '--help'], capture_output=True, text=True, check=True).stdout
    assert 'device' in out and '--max_batch' in out
    out = subprocess.run([sys.executable, '-m', 'selmix.bench', 'device', '--presets', 'cifar10_lt', '--repeats', '1',
                          '--max_batch', '2', '--device', 'cpu'], capture_output=True, text=True, check=True).stdout
    assert 'cifar10_lt' in out and 'wrn28_2' in out and 'ratio' in out
