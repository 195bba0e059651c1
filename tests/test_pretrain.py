"""Pre-training beyond nbs/05b_losses and nbs/06_pretrain (which check the losses by hand, the cache, one resumption and the presets): every
method resumed bit-exactly, the control that makes that test able to fail, DDP under torchrun, damaged checkpoints, the
device path, custom benchmarks."""
import os, random, sys, subprocess
from dataclasses import replace
from pathlib import Path
import numpy as np, pytest, torch
import selmix.pretrain as P
from selmix.pretrain import PretrainConfig, pretrain, pretrained_model, evaluate
from selmix.data import load_benchmark, Split
from selmix.models import get_model

REPO = Path(__file__).resolve().parents[1]
TINY = PretrainConfig(steps=4, batch_size=4, mu=2, eval_every=2, ckpt_every=2, seed=0)

@pytest.fixture(scope='module')
def bench():
    "The embedded benchmark with a 10-per-class validation split, to keep the many validations cheap."
    b = load_benchmark('mnist_lt', seed=0)
    keep = torch.cat([torch.nonzero(b.val.y == k)[:10, 0] for k in range(b.num_classes)])
    return replace(b, val=Split(b.val.x[keep], b.val.y[keep], b.val.idx[keep]))

def same_weights(a, b): return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

class Crash(Exception): pass
def crash_at(n):
    def f(step, stats):
        if step == n: raise Crash()
    return f

@pytest.fixture(scope='module')
def full_runs(bench, tmp_path_factory):
    "Uninterrupted TINY runs, per method: (returned model, checkpoint folder)."
    runs = {}
    for method in ('fixmatch_la', 'mixup'):
        d = tmp_path_factory.mktemp(method)
        runs[method] = pretrain(bench, replace(TINY, method=method), 'cpu', d, progress=False), d
    return runs

@pytest.mark.parametrize('method', ['fixmatch_la', 'mixup'])
def test_resume_is_bit_exact(bench, tmp_path, method, full_runs):
    cfg = replace(TINY, method=method)
    full, full_dir = full_runs[method]
    with pytest.raises(Crash): pretrain(bench, cfg, 'cpu', tmp_path/'cut', progress=False, on_step=crash_at(3))
    assert torch.load(tmp_path/'cut'/'last.pt', weights_only=False)['state']['step'] == 2
    ran = []
    resumed = pretrain(bench, cfg, 'cpu', tmp_path/'cut', progress=False, on_step=lambda s, _: ran.append(s))
    assert ran == [3, 4]                      # it resumed, it did not start over
    assert same_weights(full, resumed)
    a, b = (torch.load(d/'last.pt', weights_only=False) for d in (full_dir, tmp_path/'cut'))
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])   # raw weights, not only the EMA

def test_resume_needs_the_rng_states(bench, tmp_path, monkeypatch, full_runs):
    "Control: if the random states were not restored, the resumed run would differ (so the test above can fail)."
    with pytest.raises(Crash): pretrain(bench, TINY, 'cpu', tmp_path/'cut', progress=False, on_step=crash_at(3))
    monkeypatch.setattr(P, 'set_rng_state', lambda s, g: None)
    pretrain(bench, TINY, 'cpu', tmp_path/'cut', progress=False)
    a, b = (torch.load(d/'last.pt', weights_only=False)['model'] for d in (full_runs['fixmatch_la'][1], tmp_path/'cut'))
    assert not all(torch.equal(a[k], b[k]) for k in a)

def test_selection_uses_validation_best(bench, tmp_path):
    "select='best' returns the EMA weights of the best validation step; evaluating them on val gives that record."
    cfg = replace(TINY, method='ce', steps=6, eval_every=2)
    model = pretrain(bench, cfg, 'cpu', tmp_path, progress=False)
    hist = torch.load(tmp_path/'final.pt', weights_only=False)['history']
    best = max(h['val_mean_recall'] for h in hist)
    assert evaluate(model, bench.val, bench, 'cpu')['mean_recall'] == pytest.approx(best)

def test_ddp_ranks_agree(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           str(REPO/'tests'/'ddp_pretrain_worker.py'), str(tmp_path), str(tmp_path/'ckpt')]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path/f'rank{i}.pt', weights_only=False) for i in (0, 1))
    assert (r0['world'], r1['world'], r0['rank'], r1['rank']) == (2, 2, 0, 1)
    for k in r0['state']: assert torch.equal(r0['state'][k], r1['state'][k]), k
    torch.manual_seed(0)
    init = get_model('small_cnn', 10, in_channels=1).state_dict()
    assert not torch.equal(init['head.weight'], r0['state']['head.weight'])   # it trained
    assert torch.load(tmp_path/'ckpt'/'final.pt', weights_only=False)['world_size'] == 2

def test_ema_decay_must_be_below_one():   # the other config messages are checked in 06_pretrain
    with pytest.raises(ValueError, match='ema'): PretrainConfig(ema=1.0)


# ---------------------------------------------------------------- validation before expensive work
@pytest.mark.parametrize('seed', [1e17, -1, '3'])   # 06_pretrain checks PretrainConfig's message for these and more
def test_seed_is_validated_by_the_cli_before_loading_data(seed):
    with pytest.raises(ValueError, match=r'seed=.* must be an integer in \[0, 2\*\*31\)'): PretrainConfig(seed=seed)
    with pytest.raises(ValueError, match='seed'): P.main(dataset='mnist_lt', seed=seed, steps=1)


def test_largest_seed_runs(bench, tmp_path):
    cfg = replace(TINY, method='ce', steps=1, eval_every=1, seed=2**31 - 1)
    pretrain(bench, cfg, 'cpu', tmp_path, progress=False)
    assert torch.load(tmp_path/'final.pt', weights_only=False)['config']['seed'] == 2**31 - 1


# ---------------------------------------------------------------- damaged checkpoints
def _damage(f, how):
    data = f.read_bytes()
    f.write_bytes({'empty': b'', 'truncated': data[:len(data)//3], 'garbage': random.Random(0).randbytes(2048)}[how])


@pytest.mark.parametrize('how', ['empty', 'truncated', 'garbage'])
def test_damaged_last_pt_starts_over(bench, tmp_path, full_runs, how):
    full, full_dir = full_runs['fixmatch_la']
    with pytest.raises(Crash): pretrain(bench, TINY, 'cpu', tmp_path, progress=False, on_step=crash_at(3))
    _damage(tmp_path/'last.pt', how)
    ran = []
    with pytest.warns(UserWarning, match=f"{tmp_path/'last.pt'} is damaged .*starts over"):
        again = pretrain(bench, TINY, 'cpu', tmp_path, progress=False, on_step=lambda s, _: ran.append(s))
    assert ran == [1, 2, 3, 4] and same_weights(full, again)     # a clean restart equals an uninterrupted run


@pytest.mark.parametrize('how', ['empty', 'truncated', 'garbage'])
def test_damaged_final_pt_is_rebuilt_from_last(bench, tmp_path, full_runs, monkeypatch, how):
    import shutil
    full, full_dir = full_runs['fixmatch_la']
    shutil.copytree(full_dir, tmp_path/'ck')
    _damage(tmp_path/'ck'/'final.pt', how)
    with pytest.raises(P.DamagedFile, match=f"pre-trained checkpoint {tmp_path/'ck'/'final.pt'} is damaged"):
        P.load_pretrained(tmp_path/'ck'/'final.pt', 'cpu')
    monkeypatch.setattr(P, 'train_loss', lambda *a, **k: pytest.fail('trained although last.pt holds the last step'))
    with pytest.warns(UserWarning, match='final.pt is damaged .*resuming from last.pt'):
        healed = pretrained_model(bench, TINY, 'cpu', ckpt_dir=tmp_path/'ck', progress=False)
    assert same_weights(full, healed) and P.load_pretrained(tmp_path/'ck'/'final.pt', 'cpu') is not None


def test_damaged_final_pt_without_last_is_retrained(bench, tmp_path, full_runs):
    import shutil
    full, full_dir = full_runs['fixmatch_la']
    (tmp_path/'ck').mkdir(); shutil.copy(full_dir/'final.pt', tmp_path/'ck')
    _damage(tmp_path/'ck'/'final.pt', 'truncated')
    with pytest.warns(UserWarning, match='final.pt is damaged .*pre-training again'):
        healed = pretrained_model(bench, TINY, 'cpu', ckpt_dir=tmp_path/'ck', progress=False)
    assert same_weights(full, healed)


# ---------------------------------------------------------------- device path on this CPU
def test_amp_requested_on_cpu_is_recorded_off_and_changes_nothing(bench, tmp_path, full_runs):
    full, _ = full_runs['mixup']
    with pytest.warns(UserWarning, match='amp=True needs a CUDA device'):
        m = pretrain(bench, replace(TINY, method='mixup', amp=True), 'cpu', tmp_path, progress=False)
    rec = torch.load(tmp_path/'final.pt', weights_only=False)
    assert rec['amp'] is False and rec['device'] == 'cpu' and rec['config']['amp'] is True
    assert same_weights(full, m)                                   # the float32 path, bit for bit
    assert P.config_hash(bench, TINY) == P.config_hash(bench, replace(TINY, amp=True))   # a device setting: the same cache


def test_amp_parts_on_cuda_without_gpu(monkeypatch):
    "The CUDA decision itself: on a (pretended) CUDA device amp is on by default and a gradient scaler is made."
    made = []
    monkeypatch.setattr(torch.amp, 'GradScaler', lambda dev: made.append(dev) or 'scaler')
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    s, scaler = P._amp_parts(TINY, torch.device('cuda', 0), 0)
    assert s['amp'] and s['channels_last'] and scaler == 'scaler' and made == ['cuda'] and torch.backends.cudnn.benchmark
    s, scaler = P._amp_parts(replace(TINY, amp=False), torch.device('cuda', 0), 0)
    assert not s['amp'] and scaler is None


@pytest.mark.parametrize('method,n', [('mixup', 3), ('la', 2), ('fixmatch_la', 2)])
def test_every_batch_goes_through_to_device(bench, monkeypatch, method, n):
    seen = []
    real = P.to_device
    monkeypatch.setattr(P, 'to_device', lambda x, d: seen.append((tuple(x.shape), d)) or real(x, d))
    cfg = replace(TINY, method=method)
    model = get_model('small_cnn', 10, in_channels=1)
    P.train_loss(model, bench, cfg, torch.Generator().manual_seed(0), P.log_prior(bench.labeled.y, 10), torch.device('cpu'))
    assert len(seen) == n and all(d == torch.device('cpu') for _, d in seen)
    assert (cfg.batch_size,) in [s for s, _ in seen]                   # the labels
    assert any(len(s) == 4 for s, _ in seen)                            # the images


# ---------------------------------------------------------------- custom and supervised benchmarks
def test_custom_named_arrays_with_8px_images_pretrain(tmp_path):
    "In-memory 8×8 RGB arrays under a name of their own: a backbone chosen by image size, and a few steps that learn."
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = rng.integers(0, 96, (120, 3, 8, 8)).astype(np.uint8)
    for k in range(3): X[y == k, k] += 150                              # class k is bright in channel k: learnable
    b = load_benchmark((X, y), name='tiny8', root=tmp_path, N1=20, rho_l=4, M1=5, val_per_class=5, test_per_class=5)
    assert (b.name, b.image_size, b.channels, b.num_classes) == ('tiny8', 8, 3, 3)
    cfg = replace(TINY, method='la', steps=12, batch_size=16, eval_every=12, ckpt_every=12, lr=0.1)
    assert P.arch_of(b, cfg) == 'small_cnn'
    losses = []
    m = pretrained_model(b, cfg, 'cpu', tmp_path/'ck', progress=False, on_step=lambda s, st: losses.append(st['loss']))
    assert len(losses) == 12 and np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    with torch.no_grad(): assert m(b.prepare(b.test.images(torch.arange(4)))).shape == (4, 3)
    ck = torch.load(tmp_path/'ck'/'final.pt', weights_only=False)
    assert (ck['arch'], ck['in_channels'], ck['dataset'], ck['num_classes']) == ('small_cnn', 3, 'tiny8', 3)
    assert P.arch_of(replace(b, image_size=32), cfg) == 'wrn28_2' and P.arch_of(replace(b, image_size=96), cfg) == 'resnet50'
    assert P.arch_of(b, replace(cfg, arch='wrn28_2')) == 'wrn28_2'
