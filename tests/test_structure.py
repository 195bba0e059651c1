"""The repository's shape, checked statically (notebook JSON and module ASTs; nothing is executed):

- every notebook in nbs/ is committed executed: it carries outputs, and every cell that draws a figure or shows a table
  carries some (`make notebooks` regenerates them);
- one implementation per idea: no two selmix modules export a function or class of the same name, and the modules that
  define `POLICIES` agree on it;
- reading order is import order: a notebook imports only from modules whose notebook comes before it;
- committed outputs are clean (no error, stderr stream, widget, traceback, warning or path of the machine that ran
  them) and current (each code cell carries the hash of the source that produced its outputs, `stamp_notebook`);
- the form of the models (fastcore, nbdev): no code cell over 40 lines unless its first line says why (`# long cell:`),
  at most two definitions per export cell, and under each public definition an example that shows a value.

Each check is a function returning a list of problems, run on the repository and on crafted bad inputs."""
import ast, json, re, warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NBS, LIB = REPO/'nbs', REPO/'selmix'
ENTRY = ('index.ipynb', 'run.ipynb', 'report.ipynb')   # after the numbered notebooks, in this order

# ---------------------------------------------------------------- helpers
def reading_order(nbdir:Path)->list:
    "Notebooks in reading order: numbered ones by number, then index, run and report, then any other by name."
    nbs = sorted(p.name for p in nbdir.glob('*.ipynb'))
    num = [n for n in nbs if re.match(r'\d+[a-z]?_', n)]   # 03a_ sorts after 03_, as in fastcore
    return [nbdir/n for n in num + [n for n in ENTRY if n in nbs] + [n for n in nbs if n not in num and n not in ENTRY]]

def code_cells(nb_path:Path)->list:
    return [c for c in json.loads(Path(nb_path).read_text())['cells'] if c['cell_type'] == 'code']

def cell_source(c)->str: return ''.join(c['source'])

def parse(src:str):
    "AST of a cell, with IPython magics and shell lines blanked; None if it still does not parse."
    src = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', SyntaxWarning); warnings.simplefilter('ignore', DeprecationWarning)   # '\\l' in a regex
        try: return ast.parse(src)
        except SyntaxError: return None

def default_exp(nb_path:Path):
    "The module a notebook exports to (`#| default_exp name`), or None."
    for c in code_cells(nb_path):
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', cell_source(c), re.M)
        if m: return m.group(1)
    return None

# ---------------------------------------------------------------- 1. committed outputs
DISPLAY_CALLS = {'display', 'Markdown', 'HTML', 'Image'}       # IPython.display: a visible result
PLOT_MODULES = {'plt', 'sns'}                                  # any call on pyplot / seaborn draws or shows a figure
PLOT_METHODS = {'plot', 'imshow', 'hist', 'scatter', 'bar', 'barh', 'heatmap', 'matshow', 'pcolormesh', 'contourf'}

def _top_level(tree):
    "Statements the cell executes itself: descend into if/for/while/with/try, not into def, class or lambda bodies."
    todo = list(tree.body)
    while todo:
        s = todo.pop(0)
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): continue
        yield s
        for f in ('body', 'orelse', 'finalbody', 'handlers'):
            todo.extend(x for x in getattr(s, f, []) if isinstance(x, ast.AST))

def _calls(stmt):
    "Calls made by a statement, not counting calls inside lambdas or comprehensions' nested functions."
    todo = [stmt]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Lambda): continue
        if isinstance(n, ast.Call): yield n
        todo.extend(ast.iter_child_nodes(n))

def shows_something(src:str)->bool:
    """Whether a code cell draws a figure or shows a table or text: it calls display/Markdown, calls into
    pyplot or seaborn, calls a plotting method (`.plot(`, `.imshow(`, ...), or ends with a bare expression that is
    not a call (a DataFrame, a variable: Jupyter shows its value). Code inside function bodies does not count."""
    tree = parse(src)
    if tree is None or not tree.body: return False
    for s in _top_level(tree):
        for c in _calls(s):
            f = c.func
            if isinstance(f, ast.Name) and f.id in DISPLAY_CALLS: return True
            if isinstance(f, ast.Attribute):
                root = f.value
                while isinstance(root, ast.Attribute): root = root.value
                if isinstance(root, ast.Name) and root.id in PLOT_MODULES: return True
                if f.attr in PLOT_METHODS: return True
    last = tree.body[-1]
    return isinstance(last, ast.Expr) and not isinstance(last.value, (ast.Call, ast.Constant, ast.Await, ast.Yield))

def output_problems(nb_path:Path)->list:
    "A notebook without any output, and every cell that shows something but carries no output."
    cells = code_cells(nb_path)
    out = [] if any(c.get('outputs') for c in cells) else [f"{nb_path.name}: no cell carries an output (execute it: make notebooks)"]
    for i, c in enumerate(cells):
        src = cell_source(c)
        if re.search(r'^#\|\s*(eval:\s*false|export)', src, re.M): continue
        if shows_something(src) and not c.get('outputs'):
            out.append(f"{nb_path.name}: code cell {i} (id {c.get('id')}) draws or shows something but has no output: "
                       + src.strip().splitlines()[-1][:80])
    return out

def test_every_notebook_is_committed_with_outputs():
    problems = [p for nb in reading_order(NBS) for p in output_problems(nb)]
    assert not problems, '\n'.join(problems)

# ---------------------------------------------------------------- 2. one implementation per idea
def module_exports(py:Path)->dict:
    "name -> kind ('function', 'class', 'value') of what a module defines itself and lists in `__all__`."
    tree = ast.parse(py.read_text())
    all_ = next((ast.literal_eval(s.value) for s in tree.body if isinstance(s, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == '__all__' for t in s.targets)), None)
    defined = {}
    for s in tree.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)): defined[s.name] = 'function'
        elif isinstance(s, ast.ClassDef): defined[s.name] = 'class'
        elif isinstance(s, (ast.Assign, ast.AnnAssign)):
            for t in (s.targets if isinstance(s, ast.Assign) else [s.target]):
                for n in ast.walk(t):
                    if isinstance(n, ast.Name): defined.setdefault(n.id, 'value')
    names = all_ if all_ is not None else [n for n in defined if not n.startswith('_')]
    return {n: defined[n] for n in names if n in defined}   # a name imported from elsewhere is not its own

def library_modules(lib:Path)->list:
    return sorted(p for p in lib.glob('*.py') if p.name not in ('__init__.py', '_modidx.py'))

SHARED_NAMES = {'main'}   # the `python -m selmix.<module>` entry point of each command-line module

def duplicate_problems(lib:Path)->list:
    "Functions and classes exported under the same name by two modules."
    seen = {}
    for py in library_modules(lib):
        for n, kind in module_exports(py).items():
            if kind != 'value' and n not in SHARED_NAMES: seen.setdefault(n, []).append(py.stem)
    return [f"{n} is exported by {', '.join(ms)}" for n, ms in sorted(seen.items()) if len(ms) > 1]

def policies_problems(lib:Path, name:str='POLICIES')->list:
    "Modules that define `name` themselves (an assignment, not an import) must give it the same value."
    vals = {}
    for py in library_modules(lib):
        for s in ast.parse(py.read_text()).body:
            if isinstance(s, (ast.Assign, ast.AnnAssign)) and any(
                    isinstance(t, ast.Name) and t.id == name for t in (s.targets if isinstance(s, ast.Assign) else [s.target])):
                try: vals[py.stem] = ast.literal_eval(s.value)
                except ValueError: vals[py.stem] = ast.dump(s.value)   # not a literal: compare the expression itself
    if len({repr(v) for v in vals.values()}) <= 1: return []
    return [f"{name} differs between modules: " + '; '.join(f"{m}: {v!r}" for m, v in vals.items())]

def test_no_two_modules_export_the_same_function_or_class():
    problems = duplicate_problems(LIB)
    assert not problems, '\n'.join(problems)

def test_modules_that_define_policies_agree():
    problems = policies_problems(LIB)
    assert not problems, '\n'.join(problems)

# ---------------------------------------------------------------- 3. reading order is import order
def selmix_imports(src:str)->set:
    "The selmix modules a cell imports (`import selmix.x`, `from selmix.x import ...`, `from selmix import x`)."
    tree, out = parse(src), set()
    for n in ast.walk(tree) if tree is not None else []:
        if isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('selmix.')}
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            if n.module.startswith('selmix.'): out.add(n.module.split('.')[1])
            elif n.module == 'selmix': out |= {a.name for a in n.names}
    return out

def order_problems(nbdir:Path)->list:
    "Imports of a module whose notebook comes at or after the importing notebook in the reading order."
    order = reading_order(nbdir)
    where = {m: i for i, nb in enumerate(order) if (m := default_exp(nb))}
    out = []
    for i, nb in enumerate(order):
        own = default_exp(nb)
        for c in code_cells(nb):
            for m in sorted(selmix_imports(cell_source(c))):
                if m != own and m in where and where[m] >= i:
                    out.append(f"{nb.name} imports selmix.{m}, whose notebook {order[where[m]].name} comes later")
    return sorted(set(out))

def test_notebooks_import_only_from_earlier_notebooks():
    problems = order_problems(NBS)
    assert not problems, '\n'.join(problems)

# ---------------------------------------------------------------- 4. committed outputs are clean and current
WIDGET = 'application/vnd.jupyter.widget-view+json'
DIRTY = {'a traceback': re.compile(r'Traceback \(most recent|KeyboardInterrupt'),
         'a warning': re.compile(r'\b\w*Warning\b:|\bWARNING \|'),
         'a path of this machine': re.compile(r'(?<![\w.])/(?:work|root|home|tmp|usr|opt|var)/|\.venv/|site-packages')}

def output_text(o)->str:
    "The text an output shows: a stream's text, or the text/* parts of a result."
    parts = [o.get('text', '')] + [v for k, v in o.get('data', {}).items() if k.startswith('text/')]
    return ''.join(''.join(p) if isinstance(p, list) else p for p in parts)

def hygiene_problems(nb_path:Path)->list:
    "Outputs a reader should not see: errors, stderr streams (warnings, progress bars), widgets, tracebacks, warnings, machine paths."
    out = []
    for i, c in enumerate(code_cells(nb_path)):
        for o in c.get('outputs', []):
            what = ('an error' if o['output_type'] == 'error' else 'a stderr stream' if o.get('name') == 'stderr'
                    else 'a widget' if WIDGET in o.get('data', {}) else None)
            what = what or next((k for k, p in DIRTY.items() if p.search(output_text(o))), None)
            if what: out.append(f"{nb_path.name}: code cell {i} (id {c.get('id')}) shows {what}: {output_text(o).strip()[:100]!r}")
    return out

STAMP = 'source_sha'   # cell metadata key kept by nbdev_clean (settings.ini: allowed_cell_metadata_keys)

def source_sha(c)->str:
    import hashlib
    return hashlib.sha256(cell_source(c).encode()).hexdigest()[:12]

def stamp_notebook(nb_path:Path)->int:
    "After executing `nb_path`: record in each code cell the hash of the source its outputs came from; returns the cells stamped."
    nb = json.loads(Path(nb_path).read_text())
    cells = [c for c in nb['cells'] if c['cell_type'] == 'code']
    for c in cells: c['metadata'][STAMP] = source_sha(c)
    Path(nb_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return len(cells)

def freshness_problems(nb_path:Path)->list:
    "Code cells whose source changed after the notebook was last executed and stamped (or that were never stamped)."
    return [f"{nb_path.name}: code cell {i} (id {c.get('id')}) " + ('was never stamped' if STAMP not in c.get('metadata', {})
            else 'changed since its outputs were made') + ": " + (cell_source(c).strip().splitlines() or [''])[0][:60]
            for i, c in enumerate(code_cells(nb_path)) if c.get('metadata', {}).get(STAMP) != source_sha(c)]

# Committed before these checks and not re-executed since (each leaves this list when `make notebooks NOTEBOOKS=...` runs it)
NOT_YET_REEXECUTED = set()

def test_committed_outputs_are_clean():
    problems = [p for nb in reading_order(NBS) if nb.name not in NOT_YET_REEXECUTED for p in hygiene_problems(nb)]
    assert not problems, '\n'.join(problems)

def test_committed_outputs_are_current():
    problems = [p for nb in reading_order(NBS) if nb.name not in NOT_YET_REEXECUTED for p in freshness_problems(nb)]
    assert not problems, '\n'.join(problems) + '\n(re-execute: make notebooks NOTEBOOKS="<names>")'

def test_the_exemption_list_only_names_notebooks_that_need_it():
    names = {p.name for p in NBS.glob('*.ipynb')}
    assert NOT_YET_REEXECUTED <= names, NOT_YET_REEXECUTED - names
    stale = {n for n in NOT_YET_REEXECUTED if not hygiene_problems(NBS/n) and not freshness_problems(NBS/n)}
    assert not stale, f"clean and current now: remove {sorted(stale)} from NOT_YET_REEXECUTED"

# ---------------------------------------------------------------- each check fails on a crafted bad input
def _nb(path, *cells):
    "Write a notebook; each cell is (source, outputs)."
    path.write_text(json.dumps(dict(nbformat=4, nbformat_minor=5, metadata={}, cells=[
        dict(cell_type='code', id=f'c{i}', metadata={}, execution_count=None, source=s, outputs=o)
        for i, (s, o) in enumerate(cells)])))
    return path

OUT = [dict(output_type='stream', name='stdout', text='x\n')]

def test_outputs_check_catches_unexecuted_notebooks(tmp_path):
    bare = _nb(tmp_path/'01_a.ipynb', ('x = 1', []), ('test_eq(x, 1)', []))
    assert len(output_problems(bare)) == 1 and 'no cell carries an output' in output_problems(bare)[0]
    fig = _nb(tmp_path/'02_b.ipynb', ('print(1)', OUT), ('fig, ax = plt.subplots()\nax.plot([1, 2])', []))
    assert len(output_problems(fig)) == 1 and 'code cell 1' in output_problems(fig)[0]
    table = _nb(tmp_path/'03_c.ipynb', ('print(1)', OUT), ('df = load()\ndf', []), ('display(Markdown("hi"))', []))
    assert len(output_problems(table)) == 2
    ok = _nb(tmp_path/'04_d.ipynb', ('df = load()\ndf', OUT), ('#| export\ndef f():\n    plt.plot([1])', []),
             ('def g(ax): ax.plot([1])', []), ('test_eq(f(), None)', []), ('for x in xs:\n    if x: display(x)', OUT))
    assert output_problems(ok) == []

def test_shows_something():
    for src in ('plt.show()', 'sns.lineplot(df, x="a", y="b")', 'df.plot(x="a")', 'display(df)', 'Markdown("x")',
                'df.round(2)\nt', 'if ok:\n    fig = plt.figure()', 'a.b'):
        assert shows_something(src), src
    for src in ('x = 1', 'test_eq(f(1), 2)', 'def f():\n    plt.plot([1])', 'print(1)', '"a docstring"', '%time x = 1'):
        assert not shows_something(src), src

def test_duplicate_and_policies_checks_catch_bad_modules(tmp_path):
    (tmp_path/'a.py').write_text("__all__ = ['greedy', 'POLICIES', 'helper']\nPOLICIES = ('selmix', 'uniform')\n"
                                 "def greedy(g): pass\ndef helper(): pass\n")
    (tmp_path/'b.py').write_text("__all__ = ['greedy', 'POLICIES']\nfrom a import helper\nPOLICIES = ('selmix', 'uniform', 'greedy')\n"
                                 "class greedy: pass\n")
    (tmp_path/'c.py').write_text("from a import greedy, helper, POLICIES\n__all__ = ['other', 'main']\ndef other(): pass\ndef main(): pass\n")
    (tmp_path/'d.py').write_text("__all__ = ['main']\ndef main(): pass\n")   # each command-line module has its own main
    assert duplicate_problems(tmp_path) == ['greedy is exported by a, b']   # helper (imported by b and c) is not b's or c's
    assert len(policies_problems(tmp_path)) == 1 and 'POLICIES differs' in policies_problems(tmp_path)[0]
    (tmp_path/'b.py').write_text("__all__ = ['sample']\nPOLICIES = ('selmix', 'uniform')\ndef sample(): pass\n")
    assert duplicate_problems(tmp_path) == [] and policies_problems(tmp_path) == []

def test_order_check_catches_imports_from_later_notebooks(tmp_path):
    _nb(tmp_path/'01_data.ipynb', ('#| default_exp data', []), ('from selmix.models import get_model', []),
        ('import selmix.data\n"python -m selmix.models"', []))   # its own module, and a string: fine
    _nb(tmp_path/'02_models.ipynb', ('#| default_exp models', []), ('from selmix.data import load', []))
    _nb(tmp_path/'03_train.ipynb', ('#| default_exp train', []), ('def f():\n    from selmix import models\n    import selmix.data', []))
    _nb(tmp_path/'run.ipynb', ('from selmix.train import f', []))
    _nb(tmp_path/'index.ipynb', ('import selmix', []))
    assert [p.name for p in reading_order(tmp_path)] == ['01_data.ipynb', '02_models.ipynb', '03_train.ipynb', 'index.ipynb', 'run.ipynb']
    assert order_problems(tmp_path) == ['01_data.ipynb imports selmix.models, whose notebook 02_models.ipynb comes later']

def test_hygiene_check_catches_what_a_reader_should_not_see(tmp_path):
    stream = lambda t, name='stdout': dict(output_type='stream', name=name, text=t)
    result = lambda t: dict(output_type='execute_result', data={'text/plain': t}, metadata={}, execution_count=None)
    bad = [[dict(output_type='error', ename='E', evalue='x', traceback=[])], [stream('0%|   | 0/500\n', 'stderr')],
           [dict(output_type='display_data', data={WIDGET: {}, 'text/plain': 'HBox()'}, metadata={})],
           [stream('Traceback (most recent call last):\n')], [stream('KeyboardInterrupt caught in kernel\n')],
           [stream('x.py:3: FutureWarning: deprecated\n')], [stream('[IPKernelApp] WARNING | Kernel is running\n')],
           [result("PosixPath('/work/main/runs/x')")], [stream('tables written to /tmp/tmpab/report\n')],
           [stream('see .venv/lib/python3.11/x.py\n')]]
    nb = _nb(tmp_path/'01_a.ipynb', *[('x', o) for o in bad])
    problems = hygiene_problems(nb)
    assert [int(p.split('code cell ')[1].split()[0]) for p in problems] == list(range(len(bad))), problems
    ok = _nb(tmp_path/'02_b.ipynb', ('x', [stream('results in runs/mnist_lt (5 seeds); 3/4 done; a warning-free run\n')]),
             ('y', [result("{'data_root': 'data', 'url': 'https://example.org/tmp/x'}")]))
    assert hygiene_problems(ok) == []

def test_freshness_check_fails_on_a_stale_output(tmp_path):
    nb = _nb(tmp_path/'01_a.ipynb', ('x = 1', []), ('x', OUT))
    assert len(freshness_problems(nb)) == 2 and 'never stamped' in freshness_problems(nb)[0]
    assert stamp_notebook(nb) == 2 and freshness_problems(nb) == []
    d = json.loads(nb.read_text()); d['cells'][1]['source'] = 'x + 1'; nb.write_text(json.dumps(d))   # edited, not re-run
    assert len(freshness_problems(nb)) == 1 and 'code cell 1' in freshness_problems(nb)[0] and 'changed' in freshness_problems(nb)[0]

# ---------------------------------------------------------------- 5. form: short cells, one definition each, an example under it
MAX_LINES, MAX_DEFS = 40, 2
LONG_CELL = '# long cell:'   # a code cell that must stay long says why on its first line (after any #| directives)
# Notebooks whose form is not redesigned yet (each leaves this list when form_problems finds nothing in it)
FORM_PENDING = set()

def _is_export(src:str)->bool: return bool(re.search(r'^#\|\s*export\s*$', src, re.M))

def definitions(src:str)->list:
    "Names a cell defines at its top level: functions and classes, and `@patch`ed methods."
    tree = parse(src)
    return [] if tree is None else [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]

def _long_cell_reason(src:str)->bool:
    lines = [l for l in src.splitlines() if not l.startswith('#|')]
    return bool(lines) and lines[0].startswith(LONG_CELL)

def form_problems(nb_path:Path)->list:
    """Code cells over MAX_LINES lines (unless they name their reason), export cells with more than MAX_DEFS definitions,
    and public definitions with no example under them: a later code cell, before the next export cell, that uses the name
    and carries an output."""
    cells, out = code_cells(nb_path), []
    exports = [i for i, c in enumerate(cells) if _is_export(cell_source(c))] + [len(cells)]
    for i, c in enumerate(cells):
        src, where = cell_source(c), f"{nb_path.name}: code cell {i} (id {c.get('id')})"
        if len(src.splitlines()) > MAX_LINES and not _long_cell_reason(src): out.append(f"{where} has {len(src.splitlines())} lines")
        if i not in exports: continue
        names = definitions(src)
        if len(names) > MAX_DEFS: out.append(f"{where} exports {len(names)} definitions: {', '.join(names)}")
        below = cells[i + 1:next(j for j in exports if j > i)]
        for n in (n for n in names if not n.startswith('_')):
            if not any(re.search(rf'\b{re.escape(n)}\b', cell_source(e)) and e.get('outputs') for e in below):
                out.append(f"{where}: {n} has no example with a shown value under it")
    return out

def test_notebooks_have_the_form_of_the_models():
    problems = [p for nb in reading_order(NBS) if nb.name not in FORM_PENDING for p in form_problems(nb)]
    assert not problems, '\n'.join(problems)

def test_the_form_exemptions_only_name_notebooks_that_need_them():
    assert FORM_PENDING <= {p.name for p in NBS.glob('*.ipynb')}
    done = {n for n in FORM_PENDING if not form_problems(NBS/n)}
    assert not done, f"these meet the form now: remove {sorted(done)} from FORM_PENDING"

def test_form_check_catches_long_cells_crowded_exports_and_missing_examples(tmp_path):
    long_src = '\n'.join(f'x{i} = {i}' for i in range(41))
    nb = _nb(tmp_path/'01_a.ipynb', (long_src, OUT), ('#| export\ndef f(): pass\ndef g(): pass\ndef h(): pass', []),
             ('f()', OUT), ('g()', []), ('#| export\nclass A: pass', []), ('A', OUT), ('#| export\ndef k(): pass', []))
    got = form_problems(nb)
    assert len(got) == 5 and 'code cell 0 (id c0) has 41 lines' in got[0] and 'exports 3 definitions' in got[1], got
    assert [p.split(': ')[-1] for p in got[2:]] == ['g has no example with a shown value under it',
                                                   'h has no example with a shown value under it', 'k has no example with a shown value under it']
    ok = _nb(tmp_path/'02_b.ipynb', (f'{LONG_CELL} one table of the paper\n' + long_src, OUT),
             ('#| export\ndef f(): pass\ndef _helper(): pass', []), ('test_eq(f(), None)\nf()', OUT), ('#| exporti\ndef _g(): pass', []))
    assert form_problems(ok) == []

if __name__ == '__main__':   # `python tests/test_structure.py NB...`: stamp notebooks just executed (make notebooks does)
    import sys
    for p in sys.argv[1:]: print(f"{p}: {stamp_notebook(Path(p))} code cells stamped")
