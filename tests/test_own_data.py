"Tests of selmix.data's loading paths: one fingerprint per load, STL-10 at 32 px, your own data (folder:, npz:)."
from pathlib import Path

import numpy as np
import pytest
import torch

import selmix.data as sd
from selmix.data import array_fingerprint, load_benchmark

# the values the pre-training caches are keyed on (recorded before the single-hash change; they must never move)
MNIST_LT_FINGERPRINT = '8c71c4c7437fe04837efc42821506b9bcb566df07c4d7c0141401755da6a6bc8'
FMNIST_LT_FINGERPRINT = '30aa0008da5a79d2cf230e6ae46f23b9b0f5baf78142b4e67f222c234872818d'


def _fmnist_or_skip():
    try: return sd.fashion_arrays()
    except FileNotFoundError as e: pytest.skip(f'Fashion-MNIST not installed: {e}')


def _count_hashes(monkeypatch):
    calls = []
    real = sd.array_fingerprint
    monkeypatch.setattr(sd, 'array_fingerprint', lambda *a: calls.append(len(a)) or real(*a))
    return calls


# ---------------------------------------------------------------- one fingerprint per load, values unchanged
@pytest.mark.parametrize('name', ['mnist_lt', 'mnist_lt_sup'])
def test_digits_fingerprint_value_and_hashed_once(monkeypatch, name):
    calls = _count_hashes(monkeypatch)
    sd._mnist_arrays.cache_clear()
    try: b = load_benchmark(name, seed=0)
    finally: sd._mnist_arrays.cache_clear()
    assert b.data_fingerprint == MNIST_LT_FINGERPRINT == sd.MNIST_5000_FINGERPRINT
    assert len(calls) == 1, calls
    X, y, _ = sd._mnist_arrays()
    assert array_fingerprint(X, y) == b.data_fingerprint          # the passed-through value is what hashing gives


@pytest.mark.parametrize('name', ['fmnist_lt', 'fmnist_lt_sup'])
def test_fashion_fingerprint_value_and_hashed_once(monkeypatch, name):
    _fmnist_or_skip()
    calls = _count_hashes(monkeypatch)
    sd.fashion_arrays.cache_clear()
    try: b = load_benchmark(name, seed=0)
    finally: sd.fashion_arrays.cache_clear()
    assert b.data_fingerprint == FMNIST_LT_FINGERPRINT == sd.FASHION_FINGERPRINT
    assert len(calls) == 1, calls


# split hashes recorded before this module's changes: with the fingerprints they key the pre-training caches
SPLIT_HASHES = {'mnist_lt': 'e578b6639f15900f3e0f40374700b4a3dc4fe8d60094b930e0ccd7514b364ff8',
                'mnist_lt_sup': '8a54a9c1244aec903f45ad7ca5c3b7f9e2867a58daa453c6a5c34be058697f41',
                'fmnist_lt': '8798cc46307376ad98ebbc03894f088f24fe367bc03211008c53c288bb4c93d7',
                'fmnist_lt_sup': 'e547fa7617a2ccef268f190b9b6b46281692ca3a1455b5fd93e8c2838750513a'}


@pytest.mark.parametrize('name', list(SPLIT_HASHES))
def test_named_split_hashes_unchanged(name):
    if name.startswith('fmnist'): _fmnist_or_skip()
    assert load_benchmark(name, seed=0).split_hash == SPLIT_HASHES[name]


def test_fingerprint_without_a_verified_value_is_computed(tmp_path):
    X, y = np.zeros((8, 1, 4, 4), np.uint8), np.repeat(np.arange(2), 4)
    b = sd.benchmark_from_arrays(X, y, 2, 1, val_per_class=1, test_per_class=1, root=tmp_path)
    assert b.data_fingerprint == array_fingerprint(X, y)
    given = sd.benchmark_from_arrays(X, y, 2, 1, val_per_class=1, test_per_class=1, root=tmp_path, fingerprint='abc')
    assert given.data_fingerprint == 'abc' and given.split_hash == b.split_hash


# ---------------------------------------------------------------- STL-10 at Table G.1's 32 px, on fake files in STL-10's layout
def _write_stl10(root, per_class_train=6, per_class_test=2, n_unlabeled=5, K=10, seed=0):
    "Tiny STL-10 binaries as the release stores them (uint8 N×3×96×96 with H and W swapped; labels 1..10); returns the arrays."
    rng = np.random.default_rng(seed)
    d = Path(root) / 'stl10' / 'stl10_binary'; d.mkdir(parents=True)
    out = {}
    for split, n in [('train', per_class_train * K), ('test', per_class_test * K), ('unlabeled', n_unlabeled)]:
        X = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        X.transpose(0, 1, 3, 2).tofile(d / f'{split}_X.bin')              # torchvision transposes H and W back
        y = np.arange(n) % K
        if split != 'unlabeled': (y + 1).astype(np.uint8).tofile(d / f'{split}_y.bin')
        out[split] = (X, y)
    return out


@pytest.fixture
def fake_stl10(tmp_path, monkeypatch):
    import torchvision
    monkeypatch.setattr(torchvision.datasets.STL10, '_check_integrity', lambda self: True)   # the md5 sums are the real files'
    return tmp_path, _write_stl10(tmp_path)


def test_stl10_is_resized_to_32_px_at_load(fake_stl10):
    root, arrays = fake_stl10
    b = load_benchmark('stl10_lt', root=root, N1=4, rho_l=2, val_per_class=1)
    assert (b.image_size, b.channels, b.num_classes) == (32, 3, 10) and b.config['image_size'] == 32
    Xt = torch.as_tensor(arrays['test'][0])
    assert torch.equal(b.test.x, sd.resize_images(Xt, 32)) and b.test.y.tolist() == arrays['test'][1].tolist()
    assert b.labeled.x.shape[1:] == (3, 32, 32) and b.val.x.shape[1:] == (3, 32, 32)
    assert torch.equal(b.labeled.x, sd.resize_images(torch.as_tensor(arrays['train'][0]), 32)[b.labeled.idx])
    # the unlabeled pool stays the external set of unknown labels, at the same 32 px
    assert len(b.unlabeled) == 5 and b.unlabeled.x.shape == (5, 3, 32, 32) and (b.unlabeled.hidden_y == -1).all()
    assert b.counts('labeled') == sd.long_tailed_counts(4, 2, 10) and b.counts('val') == [1] * 10
    X = sd.resize_images(torch.as_tensor(arrays['train'][0]), 32)
    assert b.data_fingerprint == array_fingerprint(X, arrays['train'][1], b.test.x, arrays['test'][1], b.unlabeled.x)


def test_stl10_resize_is_antialiased_like_pil(fake_stl10):
    from PIL import Image
    root, arrays = fake_stl10
    b = load_benchmark('stl10_lt', root=root, N1=4, rho_l=2, val_per_class=1)
    img = arrays['test'][0][0]
    pil = np.asarray(Image.fromarray(img.transpose(1, 2, 0)).resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(b.test.x[0].numpy().astype(int) - pil.astype(int)).max() <= 1
    assert not np.array_equal(b.test.x[0].numpy(), img[:, ::3, ::3])                   # not a subsampling


def test_stl10_original_resolution_on_request(fake_stl10):
    root, arrays = fake_stl10
    b = load_benchmark('stl10_lt', root=root, N1=4, rho_l=2, val_per_class=1, image_size=96)
    assert b.image_size == 96 and torch.equal(b.test.x, torch.as_tensor(arrays['test'][0]))
    assert b.unlabeled.x.shape == (5, 3, 96, 96)
