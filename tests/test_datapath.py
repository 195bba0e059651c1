"""The pre-training data path (uint8 to the device, normalised there; statistics read only at validation; foreach EMA)
trains, on the CPU, bit for bit the weights of the code it replaced.

The reference is trained here, on this machine, by the code of commit 6f289e9 (the per-tensor EMA loop and float32
batches normalised on the CPU): `git archive` puts that commit's `selmix` in a temporary folder and this file runs as a
script with it on PYTHONPATH. (A reference recorded once on one CPU does not hold on another: float kernels round
differently between CPUs that report the same model name.) The other tests compare against references written out here."""
import hashlib, io, json, os, subprocess, sys, tarfile, tempfile
from dataclasses import replace
from pathlib import Path
import pytest, torch
from selmix.core import data_root
from selmix.data import load_benchmark
from selmix.models import get_model
from selmix import pretrain as P

REPO = Path(__file__).resolve().parents[1]
REFERENCE_COMMIT = '6f289e9'   # the first release's pre-training loop
CASES = {'fixmatch_la': dict(method='fixmatch_la', threshold=0.2), 'mixup': dict(method='mixup'), 'la': dict(method='la')}


def digest(state:dict)->str:
    "sha256 of a state dict's names and tensor bytes, in key order."
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode()); h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def short_runs(**options)->dict:
    "24-step mnist_lt pre-trainings of three methods: digests of the EMA and raw weights, losses and history (`options`: to `pretrain`)."
    torch.set_num_threads(1)
    bench = load_benchmark('mnist_lt', seed=0)
    out = {}
    for name, kw in CASES.items():
        cfg = P.pretrain_config('mnist_lt', steps=24, batch_size=8, mu=2, eval_every=12, ckpt_every=12, **kw)
        with tempfile.TemporaryDirectory() as d:
            losses = []
            m = P.pretrain(bench, cfg, 'cpu', Path(d), progress=False, on_step=lambda s, st: losses.append(float(st["loss"])), **options)
            last = torch.load(Path(d)/'last.pt', weights_only=False)
        out[name] = dict(ema=digest(m.state_dict()), model=digest(last['model']), losses=losses,
                         head_bias=[float(v) for v in m.state_dict()['head.bias']], history=last['state']['history'])
    return out


@pytest.fixture(scope='module')
def bench(): return load_benchmark('mnist_lt', seed=0)


@pytest.fixture(scope='module')
def reference(tmp_path_factory)->dict:
    "The three short runs trained by commit 6f289e9's `selmix` on this machine (skipped in a clone without that commit)."
    d = tmp_path_factory.mktemp('first_release')
    arch = subprocess.run(['git', 'archive', REFERENCE_COMMIT, 'selmix', 'settings.ini'], cwd=REPO, capture_output=True)
    if arch.returncode: pytest.skip(f"commit {REFERENCE_COMMIT} is not in this clone: {arch.stderr.decode().strip()[:100]}")
    tarfile.open(fileobj=io.BytesIO(arch.stdout)).extractall(d)
    env = os.environ | dict(PYTHONPATH=str(d), SELMIX_DATA=str(data_root()))   # its package first; the same digits
    r = subprocess.run([sys.executable, __file__, str(d/'reference.json')], cwd=d, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((d/'reference.json').read_text())


def test_the_reference_is_the_first_release():
    "The control: the reference really is other code (no Prefetcher, per-tensor EMA), not this checkout's selmix."
    d = subprocess.run(['git', 'show', f'{REFERENCE_COMMIT}:selmix/pretrain.py'], cwd=REPO, capture_output=True, text=True)
    if d.returncode: pytest.skip(f"commit {REFERENCE_COMMIT} is not in this clone")
    assert 'class Prefetcher' not in d.stdout and '_foreach_' not in d.stdout and 'class Prefetcher' in Path(P.__file__).read_text()


@pytest.mark.parametrize('prefetch', [False, True])
def test_weights_bit_identical_to_the_first_implementation(reference, prefetch):
    "On the CPU the loop, with or without drawing ahead in a background thread, trains the first release's weights."
    now = short_runs(prefetch=prefetch)
    for name in CASES:
        assert now[name]['losses'] == reference[name]['losses'], name            # every step's loss, exactly
        assert now[name]['history'] == reference[name]['history'], name
        assert (now[name]['model'], now[name]['ema']) == (reference[name]['model'], reference[name]['ema']), name


def _first_train_loss(model, bench, cfg, g, log_pi):
    "The first release's FixMatch step: float32 views normalised on the CPU by the `Augment` views themselves."
    b = cfg.batch_size
    xl, yl = P._draw(bench.labeled, b, g)
    xu, _ = P._draw(bench.unlabeled, cfg.mu*b, g)
    logits_l, logits_w, logits_s = model(torch.cat([bench.weak(xl), bench.weak(xu), bench.strong(xu)])).split([b, cfg.mu*b, cfg.mu*b])
    loss_x = P.supervised_loss(logits_l, yl, log_pi, cfg.tau)
    loss_u, kept = P.fixmatch_loss(logits_w, logits_s, cfg.threshold)
    return loss_x + cfg.lambda_u*loss_u


def test_train_loss_and_gradients_equal_the_cpu_normalising_reference(bench):
    cfg = P.PretrainConfig(steps=4, batch_size=8, mu=2, threshold=0.2)
    log_pi = P.log_prior(bench.labeled.y, 10)
    grads = []
    for step in (lambda m: P.train_loss(m, bench, cfg, torch.Generator().manual_seed(5), log_pi, torch.device('cpu'))[0],
                 lambda m: _first_train_loss(m, bench, cfg, torch.Generator().manual_seed(5), log_pi)):
        torch.manual_seed(0); m = get_model('small_cnn', 10, in_channels=1)
        torch.manual_seed(1); loss = step(m); loss.backward()
        grads.append([loss.detach()] + [p.grad for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize('method', ['fixmatch_la', 'la', 'mixup'])
def test_images_cross_as_uint8_and_stats_stay_tensors(bench, monkeypatch, method):
    shipped = []
    real = P.to_device
    monkeypatch.setattr(P, 'to_device', lambda x, d: shipped.append(x.dtype) or real(x, d))
    cfg = replace(P.PretrainConfig(batch_size=8, mu=2), method=method)
    model = get_model('small_cnn', 10, in_channels=1)
    loss, stats = P.train_loss(model, bench, cfg, torch.Generator().manual_seed(0), P.log_prior(bench.labeled.y, 10), torch.device('cpu'))
    assert torch.uint8 in shipped and torch.float32 not in shipped, shipped   # images as uint8, never float
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad for k, v in stats.items() if k != 'lam')
    assert float(stats['loss']) == float(loss.detach())


class OnDevice(torch.Tensor):
    "Marks what the model computed: reading one of these back (.item(), float()) is what would wait for a GPU."
    def item(self): pytest.fail('the step read a value back with .item()')
    def __float__(self): pytest.fail('the step read a value back with float()')


def test_no_item_in_the_step_and_stats_read_only_when_validating(bench, monkeypatch, tmp_path):
    "A step reads nothing the model computed back to the host, and the loop reads the statistics once per validation."
    reads, real_read, real_loss = [], P._read, P.train_loss
    monkeypatch.setattr(P, '_read', lambda s: reads.append(1) or real_read(s))
    def guarded(net, *a, **k):
        loss, stats = real_loss(lambda x: net(x).as_subclass(OnDevice), *a, **k)
        assert all(type(v) is OnDevice for k, v in stats.items() if k != 'lam')
        return loss, {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in stats.items()}
    monkeypatch.setattr(P, 'train_loss', guarded)
    cfg = P.PretrainConfig(steps=6, batch_size=8, mu=2, eval_every=3, ckpt_every=6, threshold=0.2)
    logged = []
    P.pretrain(bench, cfg, 'cpu', tmp_path, progress=False, on_step=lambda s, st: logged.append(float(st['loss'])))
    assert len(reads) == 2 and len(logged) == 6                          # steps 3 and 6; the caller's float() works
    hist = torch.load(tmp_path/'final.pt', weights_only=False)['history']
    assert [h['step'] for h in hist] == [3, 6] and all(type(h['loss']) is float for h in hist)
    assert hist[-1]['loss'] == logged[-1]


class Crash(Exception): pass

def test_prefetched_run_interrupted_and_resumed_equals_the_plain_run(bench, tmp_path):
    "A checkpoint stores the random state from before the next batch's draws, not the producer's, so resuming is exact."
    cfg = P.PretrainConfig(steps=8, batch_size=8, mu=2, eval_every=4, ckpt_every=3, threshold=0.2)
    plain = P.pretrain(bench, cfg, 'cpu', tmp_path/'plain', progress=False, prefetch=False)
    def crash(step, _):
        if step == 5: raise Crash()
    with pytest.raises(Crash): P.pretrain(bench, cfg, 'cpu', tmp_path/'cut', progress=False, prefetch=True, on_step=crash)
    ran = []
    resumed = P.pretrain(bench, cfg, 'cpu', tmp_path/'cut', progress=False, prefetch=True, on_step=lambda s, _: ran.append(s))
    assert ran == [4, 5, 6, 7, 8]
    for k, v in plain.state_dict().items(): assert torch.equal(v, resumed.state_dict()[k]), k


def test_prefetcher_stops_drawing_when_closed_and_passes_errors_on(bench):
    g = torch.Generator().manual_seed(0)
    cfg = P.PretrainConfig(batch_size=8, mu=2)
    ahead = P.Prefetcher(lambda s: P.draw_batch(bench, cfg, g, step=s), g, 0, 10**6)
    ahead.next(); ahead.close()
    state = g.get_state(); import time; time.sleep(0.2)
    assert not ahead.thread.is_alive() and torch.equal(state, g.get_state())   # nothing drawn after close
    def bad(step): raise RuntimeError('broken draw')
    failing = P.Prefetcher(bad, g, 0, 3)
    with pytest.raises(RuntimeError, match='broken draw'): failing.next()
    failing.close()


if __name__ == '__main__':
    Path(sys.argv[1]).write_text(json.dumps(short_runs(), indent=1))   # run by the `reference` fixture
