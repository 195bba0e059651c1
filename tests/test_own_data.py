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


# ---------------------------------------------------------------- your own data: folder:PATH and npz:PATH
TINY = {'train': {'ant': 5, 'bee': 2, 'cat': 3}, 'val': {'ant': 2, 'bee': 2, 'cat': 1}, 'test': {'ant': 2, 'bee': 1, 'cat': 2}}


def write_tree(top, counts=TINY, size=8, mode='RGB', seed=0):
    "Random size×size PNGs in top/<split>/<class>/<i>.png (PIL); returns {path relative to top: uint8 C×H×W array}."
    from PIL import Image
    rng, written = np.random.default_rng(seed), {}
    for split, per_class in counts.items():
        for c, n in per_class.items():
            (Path(top) / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 256, (size, size, 3) if mode == 'RGB' else (size, size), dtype=np.uint8)
                Image.fromarray(a, mode).save(Path(top) / split / c / f'{i}.png')
                written[f'{split}/{c}/{i}.png'] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
    return written


def _npz(path, **arrays):
    base = dict(x_train=np.zeros((6, 4, 4), np.uint8), y_train=np.array([0, 0, 0, 1, 1, 2]),
                x_val=np.zeros((3, 4, 4), np.uint8), y_val=np.array([0, 1, 2]),
                x_test=np.zeros((3, 4, 4), np.uint8), y_test=np.array([2, 1, 0]))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return f'npz:{path}'


def test_folder_counts_labels_pixels_and_name(tmp_path):
    written = write_tree(tmp_path / 'tree')
    b = load_benchmark(f'folder:{tmp_path / "tree"}', seed=0, root=tmp_path)
    assert b.name == f'folder:{(tmp_path / "tree").resolve()}' and b.num_classes == 3 and b.config['class_names'] == ['ant', 'bee', 'cat']
    assert b.counts('labeled') == [5, 2, 3] and b.counts('val') == [2, 2, 1] and b.counts('test') == [2, 1, 2]
    assert len(b.unlabeled) == 0 and (b.channels, b.image_size) == (3, 8)
    assert b.val.y.tolist() == [0, 0, 1, 1, 2] and b.test.y.tolist() == [0, 0, 1, 2, 2]
    assert np.array_equal(b.labeled.x[5].numpy(), written['train/bee/0.png'])            # sorted classes, sorted files
    assert np.array_equal(b.test.x[3].numpy(), written['test/cat/0.png'])
    train = torch.stack([torch.as_tensor(written[f'train/{c}/{i}.png']) for c in ('ant', 'bee', 'cat') for i in range(TINY['train'][c])])
    assert torch.allclose(b.prepare.mean.flatten(), (train.float() / 255).mean((0, 2, 3)))   # normalisation from train only
    assert b.data_fingerprint == array_fingerprint(train, b.labeled.y, b.test.x, b.test.y, None, b.val.x, b.val.y)
    again = load_benchmark(f'folder:{tmp_path / "tree"}', seed=0, root=tmp_path)
    assert again.split_hash == b.split_hash and again.data_fingerprint == b.data_fingerprint
    assert Path(b.split_file).parent == tmp_path / 'splits' and ':' not in Path(b.split_file).name


def test_folder_grey_images_and_hidden_folders(tmp_path):
    write_tree(tmp_path, {s: {'a': 2, 'b': 2} for s in ('train', 'val', 'test')}, mode='L')
    (tmp_path / 'train' / '.ipynb_checkpoints').mkdir()
    b = load_benchmark(f'folder:{tmp_path}', root=tmp_path, flip=False)
    assert b.channels == 1 and b.num_classes == 2 and not b.weak.flip


def test_changed_pixel_changes_the_fingerprint(tmp_path):
    from PIL import Image
    write_tree(tmp_path / 't')
    a = load_benchmark(f'folder:{tmp_path / "t"}', root=tmp_path)
    f = tmp_path / 't' / 'val' / 'ant' / '0.png'
    im = np.array(Image.open(f)); im[0, 0, 0] ^= 1; Image.fromarray(im).save(f)
    assert load_benchmark(f'folder:{tmp_path / "t"}', root=tmp_path).data_fingerprint != a.data_fingerprint


@pytest.mark.parametrize('case,match', [   # 04b_data checks: no test/, a class missing in val/, grey and colour mixed, sizes
    ('no train', r'has no train/ folder'),
    ('no val', r'has no val/ folder'),
    ('extra class in test', r"test/ has a class folder 'dog' that train/ does not have"),
    ('empty class in val', r"class 'bee' has no images in val/"),
    ('empty val', r'val/ has no images'),
    ('not square', r'images must be square; train/ant/0.png is 8×6'),
    ('not an image', r'cat/0.png is not a readable image'),
    ('16 bit', r"image mode 'I;16' is neither 8-bit grey nor colour"),
    ('no folder', r'no such folder'),
])
def test_folder_errors_name_the_problem(tmp_path, case, match):
    from PIL import Image
    top = tmp_path / 'tree'
    counts = {s: dict(v) for s, v in TINY.items()}
    if case == 'no train': counts.pop('train')
    if case == 'no val': counts.pop('val')
    if case == 'no test': counts.pop('test')
    if case == 'class missing in val': counts['val'].pop('cat')
    if case == 'extra class in test': counts['test']['dog'] = 1
    if case == 'empty class in val': counts['val']['bee'] = 0
    if case == 'empty val': counts['val'] = {c: 0 for c in counts['val']}
    if case != 'no folder': write_tree(top, counts)
    if case == 'grey in colour': Image.fromarray(np.zeros((8, 8), np.uint8), 'L').save(top / 'test' / 'bee' / '0.png')
    if case == 'size': Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(top / 'val' / 'cat' / '0.png')
    if case == 'not square':
        for f in top.rglob('*.png'): Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(f)
    if case == 'not an image': (top / 'val' / 'cat' / '0.png').write_bytes(b'not a png')
    if case == '16 bit': Image.fromarray(np.zeros((8, 8), np.uint16)).save(top / 'train' / 'bee' / '1.png')
    with pytest.raises(ValueError, match=match) as e: load_benchmark(f'folder:{top}', root=tmp_path)
    assert str(top.resolve()) in str(e.value)                                              # the folder is named


def test_npz_counts_labels_layouts_and_unlabeled(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)                                 # N×H×W×C
    src = _npz(tmp_path / 'a.npz', x_train=x, x_val=x[:3], x_test=x[3:], x_unlabeled=x[:4],
               classes=np.array(['ant', 'bee', 'cat']))
    b = load_benchmark(src, root=tmp_path)
    assert b.name == f'npz:{(tmp_path / "a.npz").resolve()}' and (b.channels, b.image_size, b.num_classes) == (3, 5, 3)
    assert b.counts('labeled') == [3, 2, 1] and b.counts('val') == [1, 1, 1] and b.test.y.tolist() == [2, 1, 0]
    assert torch.equal(b.labeled.x, torch.as_tensor(x).permute(0, 3, 1, 2)) and b.labeled.y.tolist() == [0, 0, 0, 1, 1, 2]
    assert len(b.unlabeled) == 4 and b.unlabeled.y is None and (b.unlabeled.hidden_y == -1).all()   # Algorithm 1
    assert b.config['class_names'] == ['ant', 'bee', 'cat']
    grey = load_benchmark(_npz(tmp_path / 'g.npz'), root=tmp_path)                         # N×H×W, no unlabeled pool
    assert grey.channels == 1 and len(grey.unlabeled) == 0 and grey.config['class_names'] == ['0', '1', '2']


@pytest.mark.parametrize('arrays,match', [
    (dict(x_test=None, y_test=None), r"lacks \['x_test', 'y_test'\] \(the test split is required"),
    (dict(y_val=None), r"lacks \['y_val'\]"),
    (dict(y_val=np.array([0, 1, 1])), r"class 2 \('2'\) has no sample in the val split \(x_val/y_val\)"),
    (dict(y_val=np.array([0, 1, 2]), classes=np.array(['ant', 'bee', 'cat', 'dog'])), r"class 3 \('dog'\) has no sample in the train split"),
    (dict(y_test=np.array([0, 1, 3])), r'the test labels \(x_test/y_test\) must be in 0..2 \(K = 3 classes\), found 3'),
    (dict(y_train=np.array([0, 0, 0, 1, 1, -1])), r'the train labels \(x_train/y_train\) must be in 0..1'),
    (dict(y_train=np.array([0., 0, 0, 1, 1, 2])), r'y_train must be a 1-D array of integer class indices, got float64'),
    (dict(x_val=np.zeros((3, 4, 4, 3), np.uint8)), r'the val images \(x_val/y_val\) are colour but the train images are grey'),
    (dict(x_test=np.zeros((3, 6, 6), np.uint8)), r'the test images \(x_test/y_test\) are 6×6 but the train images 4×4'),
    (dict(x_train=np.zeros((6, 4, 5), np.uint8), x_val=np.zeros((3, 4, 5), np.uint8), x_test=np.zeros((3, 4, 5), np.uint8)),
     r'images must be square'),
    (dict(x_train=np.zeros((6, 4, 4), np.float32)), r'x_train must be uint8 images'),
    (dict(x_train=np.zeros((6, 4, 4, 2), np.uint8)), r'x_train has shape \(6, 4, 4, 2\)'),
    (dict(x_val=np.zeros((0, 4, 4), np.uint8), y_val=np.zeros(0, np.int64)), r'the val split \(x_val/y_val\) is empty'),
    (dict(x_val=np.zeros((2, 4, 4), np.uint8)), r'x_val has 2 images but y_val has 3 labels'),
    (dict(x_unlabeled=np.zeros((2, 8, 8), np.uint8)), r'the unlabeled images \(x_unlabeled\) are 8×8'),
])
def test_npz_errors_name_the_problem(tmp_path, arrays, match):
    src = _npz(tmp_path / 'bad.npz', **arrays)
    with pytest.raises(ValueError, match=match) as e: load_benchmark(src, root=tmp_path)
    assert str((tmp_path / 'bad.npz').resolve()) in str(e.value)


def test_npz_unreadable_files(tmp_path):
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    with pytest.raises(ValueError, match=r'junk.npz is not a readable .npz file'): load_benchmark(f'npz:{tmp_path / "junk.npz"}')
    with pytest.raises(ValueError, match=r'missing.npz: no such file'): load_benchmark(f'npz:{tmp_path / "missing.npz"}')
    np.save(tmp_path / 'one.npy', np.zeros(3))
    with pytest.raises(ValueError, match=r'not a readable .npz'): load_benchmark(f'npz:{tmp_path / "one.npy"}')


def test_custom_overrides_and_bad_strings(tmp_path):
    src = _npz(tmp_path / 'a.npz')
    assert load_benchmark(src, root=tmp_path, image_size=2).image_size == 2
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['N1'\].*allowed"): load_benchmark(src, root=tmp_path, N1=3)
    with pytest.raises(ValueError, match=r"'folder:PATH' or 'npz:PATH'"): load_benchmark('cifar11')
    with pytest.raises(ValueError, match=r"is not 'folder:PATH' or 'npz:PATH'"): sd.custom_benchmark('npz:')
