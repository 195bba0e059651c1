"""Concurrency and crashes on the shared checkpoint cache: two processes that need the same pre-training, a holder killed
with SIGKILL in the middle of training, and a lock left by a process that died. Each test starts real processes."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch

REPO = Path(__file__).resolve().parents[1]
# a tiny pre-training: 20 steps of supervised LA on the embedded benchmark, checkpointed every 5 steps
CHILD = r'''
import json, os, sys, time
t0 = time.time()
import torch
import selmix.pretrain as P
from selmix.data import load_benchmark
out, delay = sys.argv[1], float(sys.argv[2])
calls, orig = [], P.pretrain
def spy(*a, **k):
    calls.append(time.time()); print('TRAINING', flush=True)
    if delay: k['on_step'] = lambda s, _: time.sleep(delay)   # slow down each step, so the test can kill it mid-way
    return orig(*a, **k)
P.pretrain = spy
bench = load_benchmark('mnist_lt', seed=0)
cfg = P.pretrain_config('mnist_lt', method='la', steps=20, eval_every=10, ckpt_every=5, batch_size=16)
print('READY', P.checkpoint_dir(bench, cfg), flush=True)
m = P.pretrained_model(bench, cfg, 'cpu', progress=False)
torch.save(m.state_dict(), out + '.pt')
json.dump(dict(trained=bool(calls), pid=os.getpid(), start=t0, train_start=calls[0] if calls else None, end=time.time(),
               trained_by=m.pretrain_record['trained_by'], hash=P.config_hash(bench, cfg)), open(out + '.json', 'w'))
'''


def _env(root):
    return {**os.environ, 'SELMIX_DATA': str(root), 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(REPO)}


def _start(tmp_path, root, name, delay=0.0):
    script = tmp_path / 'child.py'; script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / name), str(delay)], env=_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _temporaries(root): return sorted(str(p) for p in Path(root).rglob('*.tmp'))


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
    "Two processes started together on an empty data root, same pre-training configuration."
    tmp = tmp_path_factory.mktemp('two'); root = tmp / 'root'; root.mkdir()
    procs = [_start(tmp, root, f'p{i}') for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs): assert p.returncode == 0, e[-3000:]
    res = [json.loads((tmp / f'p{i}.json').read_text()) for i in range(2)]
    weights = [torch.load(tmp / f'p{i}.pt') for i in range(2)]
    return tmp, root, res, weights, outs


def test_two_processes_one_trains_both_get_the_same_weights(two_runs):
    tmp, root, res, weights, outs = two_runs
    trained = [r['trained'] for r in res]
    assert sorted(trained) == [False, True], res                                   # exactly one trained
    t, w = res[trained.index(True)], res[trained.index(False)]
    assert t['trained_by']['pid'] == t['pid'] == w['trained_by']['pid']              # the waiter loaded the trainer's file
    assert [o.count('TRAINING') for o, _ in outs] == [int(x) for x in trained]
    assert w['end'] >= t['train_start']                                              # it waited while the other trained
    a, b = weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)          # bit-identical
    assert _temporaries(root) == []                                                  # no temporary file left behind
    ck = root / 'checkpoints' / t['hash']
    assert sorted(p.name for p in ck.iterdir()) == ['final.pt', 'last.pt'] and (root / 'checkpoints' / f"{t['hash']}.lock").exists()
    print(f"\ntrainer pid {t['pid']}: {t['end'] - t['start']:.1f} s; waiter pid {w['pid']}: {w['end'] - w['start']:.1f} s")


def test_sigkilled_holder_neither_blocks_nor_corrupts(two_runs, tmp_path):
    "SIGKILL a process in the middle of pre-training (it holds the lock); the next run resumes it, bit for bit."
    import selmix.pretrain as P
    from selmix.data import load_benchmark
    from selmix.core import locked
    _, _, res, weights, _ = two_runs
    root = tmp_path / 'root'; root.mkdir()
    child = _start(tmp_path, root, 'killed', delay=0.3)
    ck = Path(child.stdout.readline().split(' ', 1)[1].strip())
    try:
        for _ in range(1200):                                   # wait for the first resumable checkpoint (step 5)
            if (ck / 'last.pt').exists() or child.poll() is not None: break
            time.sleep(0.05)
    finally: child.send_signal(signal.SIGKILL); child.wait()
    assert not (ck / 'final.pt').exists(), 'the child finished before it could be killed'
    step = torch.load(ck / 'last.pt', weights_only=False)['state']['step']
    assert 5 <= step < 20
    with locked(ck, timeout=5): pass                            # the dead holder's lock is gone
    os.environ['SELMIX_DATA'] = str(root)
    threads = torch.get_num_threads()
    try:
        bench = load_benchmark('mnist_lt', seed=0)
        cfg = P.pretrain_config('mnist_lt', method='la', steps=20, eval_every=10, ckpt_every=5, batch_size=16)
        ran = []
        torch.set_num_threads(1)   # as the children (OMP_NUM_THREADS=1): the same float summation order
        model = P.pretrain(bench, cfg, 'cpu', ck, progress=False, on_step=lambda s, _: ran.append(s))
    finally: os.environ.pop('SELMIX_DATA'); torch.set_num_threads(threads)
    assert ran == list(range(step + 1, 21))                     # resumed where the killed run had saved
    ref = weights[0]
    assert all(torch.equal(model.state_dict()[k], ref[k]) for k in ref)   # same weights as the uninterrupted runs
    assert _temporaries(root) == []


def test_lock_of_a_process_that_exited_without_releasing(tmp_path):
    from selmix.core import locked
    code = ('import os; from selmix.core import locked\n'
            f'l = locked({str(tmp_path / "ck")!r}); l.__enter__(); print("held", flush=True); os._exit(3)')
    r = subprocess.run([sys.executable, '-c', code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and r.stdout.strip() == 'held' and (tmp_path / 'ck.lock').exists()
    t0 = time.time()
    with locked(tmp_path / 'ck', timeout=5): pass
    assert time.time() - t0 < 1
