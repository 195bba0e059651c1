"""The test command behind `make test`: library/notebook sync, every notebook, then pytest.

Ends with one line `N passed, N failed` counting the sync check, notebooks and pytest tests together, and exits
non-zero on any failure."""
import re, subprocess, sys, tempfile, time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FAILED_HEADER = 'nbdev Tests Failed On The Following Notebooks:'


def sh(*cmd, **kw):
    "Run `cmd` at the repo root, returning the CompletedProcess with text output."
    return subprocess.run([str(c) for c in cmd], cwd=kw.pop('cwd', ROOT), text=True, capture_output=True, **kw)


def make_readme(out=ROOT/'README.md'):
    "Render `nbs/index.ipynb`, executed, to `out` as markdown (nbdev's own `nbdev_readme` needs quarto)."
    r = sh(BIN/'jupyter', 'nbconvert', '--to', 'markdown', '--execute', '--log-level', 'ERROR',
           '--TagRemovePreprocessor.enabled=True', '--TagRemovePreprocessor.remove_input_tags=remove_input',
           '--output-dir', out.parent, '--output', out.stem, ROOT/'nbs'/'index.ipynb')
    if r.returncode: raise RuntimeError(r.stderr)
    out.write_text(re.sub(r'\n{3,}', '\n\n', out.read_text()).strip() + '\n')


def check_sync():
    "True when `nbdev_export`, `nbdev_clean` and the README render leave the committed tree unchanged."
    for cmd in (['nbdev_export'], ['nbdev_clean']):
        r = sh(BIN/cmd[0], *cmd[1:])
        if r.returncode: print(r.stdout, r.stderr); return False
    try: make_readme()
    except RuntimeError as e: print('nbs/index.ipynb failed to execute (README render):', e); return False
    r = sh('git', 'status', '--porcelain', '--', 'selmix', 'nbs', 'README.md')
    if r.stdout.strip():
        print('Notebooks and library/README are out of sync; commit the output of nbdev_export, nbdev_clean and '
              f'the README render:\n{r.stdout}')
        return False
    return True


# Executed elsewhere in `make test`, with more than nbdev_test's smoke run would do: index renders the README (`check_sync`),
# run is executed by papermill in tests/test_run.py, report on the session's smoke sweep in tests/test_report.py
EXECUTED_ELSEWHERE = ('index', 'run', 'report')

def run_notebooks(path=None, n_workers=2):
    "Run `nbdev_test` on `path` (default: every notebook in nbs/ but `EXECUTED_ELSEWHERE`); return (passed, failed) notebook names."
    pattern = Path(path) if path else ROOT/'nbs'
    files = sorted(pattern.glob('*.ipynb')) if pattern.is_dir() else [pattern]
    skip = rf"^([_.]|({'|'.join(EXECUTED_ELSEWHERE)})\.ipynb$)"
    files = [f for f in files if not re.match(skip, f.name)]
    args = ['--n_workers', n_workers, '--timing', '--do_print', '--skip_file_re', skip]
    if path: args += ['--path', path]
    r = subprocess.run([str(BIN/'nbdev_test'), *map(str, args)], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    print(r.stdout)
    failed = set()
    if FAILED_HEADER in r.stdout:
        failed = {l.strip() for l in r.stdout.split(FAILED_HEADER, 1)[1].splitlines()[2:] if l.strip()}
    if r.returncode and not failed: failed = {f.name for f in files}  # crashed before naming the culprits
    return [f.name for f in files if f.name not in failed], sorted(failed)


def run_pytest(*args):
    "Run pytest with `args` (default: all of tests/); return (passed, failed) counts from its JUnit report."
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d)/'junit.xml'
        r = subprocess.run([str(BIN/'pytest'), '-q', '-p', 'no:cacheprovider', f'--junitxml={xml}', *(args or ['tests'])], cwd=ROOT)
        if r.returncode == 5: return 0, 0  # no tests collected
        if not xml.exists(): return 0, 1
        suites = list(ET.parse(xml).getroot().iter('testsuite'))
        tot = {k: sum(int(s.get(k, 0)) for s in suites) for k in ('tests', 'failures', 'errors', 'skipped')}
    failed = tot['failures'] + tot['errors']
    if r.returncode and not failed: failed = 1
    return tot['tests'] - failed - tot['skipped'], failed


# pytest files that run after the notebooks, on the core the notebooks free: the rest of pytest takes longer than the
# notebooks, and one pytest process alone leaves the other core idle
AFTER_NOTEBOOKS = ('tests/test_datapath.py', 'tests/test_robust.py', 'tests/test_pretrain.py', 'tests/test_device.py')


def main():
    """Sync first (it rewrites files); then two lanes, one per core: the notebooks followed by `AFTER_NOTEBOOKS`, and the
    rest of pytest."""
    from concurrent.futures import ThreadPoolExecutor
    start, took = time.time(), {}
    def timed(name, f, *a):
        t = time.time(); r = f(*a); took[name] = time.time() - t; return r
    print('== sync: nbdev_export, nbdev_clean and README leave no diff', flush=True)
    sync_ok = timed('sync', check_sync)
    print('== notebooks (nbdev_test), then part of pytest; beside them, the rest of pytest', flush=True)
    def first_lane(): return timed('notebooks', run_notebooks), timed('pytest after the notebooks', run_pytest, *AFTER_NOTEBOOKS)
    with ThreadPoolExecutor(2) as ex:
        lane = ex.submit(first_lane)
        py_rest = timed('pytest', run_pytest, 'tests', *(f'--ignore={f}' for f in AFTER_NOTEBOOKS))
        (nb_pass, nb_fail), py_after = lane.result()
    py_pass, py_fail = py_rest[0] + py_after[0], py_rest[1] + py_after[1]
    passed, failed = int(sync_ok) + len(nb_pass) + py_pass, int(not sync_ok) + len(nb_fail) + py_fail
    print(f'\nsync: {"ok" if sync_ok else "FAILED"}; notebooks: {len(nb_pass)} passed, {len(nb_fail)} failed '
          f'{nb_fail or ""}; pytest: {py_pass} passed, {py_fail} failed; {time.time()-start:.0f} s '
          f"({', '.join(f'{k} {v:.0f} s' for k, v in took.items())})")
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
