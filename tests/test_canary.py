"A canary for the test command itself: a notebook whose cell fails must fail the run."
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from run_all import run_notebooks


def write_nb(path, *sources):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': f'c{i}', 'metadata': {}, 'outputs': [],
                     'source': source} for i, source in enumerate(sources)],
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def test_failing_notebook_fails_the_run(tmp_path):
    write_nb(tmp_path/'good.ipynb', 'assert 1 + 1 == 2')
    write_nb(tmp_path/'bad.ipynb', 'x = 1\nassert x == 2, "deliberate canary failure"')
    passed, failed = run_notebooks(tmp_path, n_workers=1)
    assert passed == ['good.ipynb'] and failed == ['bad.ipynb']


def test_all_good_notebooks_pass(tmp_path):
    write_nb(tmp_path/'good.ipynb', 'import os\nassert os.environ.get("IN_TEST") == "1"')
    assert run_notebooks(tmp_path, n_workers=1) == (['good.ipynb'], [])


def test_slow_cells_are_skipped(tmp_path):
    "run.ipynb and report.ipynb rely on it: nbdev_test skips `#| slow` cells (settings.ini tst_flags), so they stay small."
    write_nb(tmp_path/'nb.ipynb', 'smoke = None', '#| slow\nsmoke = False', 'assert smoke is None, "the slow cell ran"')
    assert run_notebooks(tmp_path, n_workers=1) == (['nb.ipynb'], [])
