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


def test_fingerprint_without_a_verified_value_is_computed(tmp_path):
    X, y = np.zeros((8, 1, 4, 4), np.uint8), np.repeat(np.arange(2), 4)
    b = sd.benchmark_from_arrays(X, y, 2, 1, val_per_class=1, test_per_class=1, root=tmp_path)
    assert b.data_fingerprint == array_fingerprint(X, y)
    given = sd.benchmark_from_arrays(X, y, 2, 1, val_per_class=1, test_per_class=1, root=tmp_path, fingerprint='abc')
    assert given.data_fingerprint == 'abc' and given.split_hash == b.split_hash
