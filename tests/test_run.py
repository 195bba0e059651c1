"nbs/run.ipynb under papermill: bad parameters fail with one message, a tiny real run writes the metrics contract."
import json, math, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
import papermill as pm
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from imblearn.metrics import geometric_mean_score
from scipy.stats import hmean
from selmix.data import load_benchmark
from selmix.models import get_model, predict
from selmix.pretrain import arch_of, config_hash, pretrain_config, pretrained_model

REPO = Path(__file__).resolve().parents[1]
NB = REPO/'nbs'/'run.ipynb'
PAPERMILL = Path(sys.executable).parent/'papermill'
TINY = dict(overrides=dict(pretrain_method='la', pretrain_steps=100), finetune_steps=20)   # the smoke pre-training other tests cache

def env(): return dict(os.environ)

def assert_report(rep:dict, y, pred, K:int, what:str=''):
    "`rep` (a `selmix.metrics.report`) is the report of predictions `pred` of labels `y`, computed here by other libraries."
    r = recall_score(y, pred, average=None, labels=range(K), zero_division=0)
    cov, h, eps = np.bincount(pred, minlength=K)/len(y), 9*K//10, 1/(100*K)
    want = dict(recalls=r, mean_recall=balanced_accuracy_score(y, pred), min_recall=r.min(), accuracy=accuracy_score(y, pred),
                g_mean=geometric_mean_score(y, pred, labels=range(K), average='multiclass', correction=eps),
                h_mean=hmean(np.maximum(r, eps)), min_ht_recall=min(r[:h].mean(), r[h:].mean()), coverages=cov,
                min_coverage=cov.min(), min_ht_coverage=min(cov[:h].mean(), cov[h:].mean()))
    for k, v in want.items(): np.testing.assert_allclose(rep[k], v, atol=1e-12, err_msg=f'{what} {k}')

def test_bad_parameters_exit_nonzero_with_one_message(tmp_path):
    "Every kind of bad parameter at once (one kernel): each is named in one message, with the valid choices, and nothing is written."
    r = subprocess.run([str(PAPERMILL), str(NB), str(tmp_path/'out.ipynb'), '-k', 'python3', '-p', 'objective', 'best_recall',
                        '-p', 'policy', 'random', '-p', 'finetune_steps', '-5', '-p', 'device', 'tpu',
                        '-p', 'finetune_step', '60', '-p', 'seed', '1e17', '-p', 'overrides', '{"lam_schedule": "cosine"}', '-p', 'smoke', 'yes',
                        '-p', 'In', '1', '-p', 'Out', '1', '-p', 'get_ipython', '1',
                        '-p', 'out_dir', str(tmp_path/'run')], capture_output=True, text=True, env=env(), cwd=REPO)
    assert r.returncode != 0
    err = r.stdout + r.stderr
    assert 'ValueError: bad parameters' in err and 'Valid parameters' in err and 'TypeError' not in err
    for piece in ("objective='best_recall'", 'min_recall, g_mean', "policy='random'", 'selmix, uniform, greedy',
                  'finetune_steps=-5', "device='tpu'", "unknown parameter 'finetune_step'", 'seed=1e+17', "lam_schedule='cosine'",
                  'constant, uniform, sine, tanh', "smoke='yes'", "unknown parameter 'In'", "unknown parameter 'Out'",
                  "unknown parameter 'get_ipython'"):
        assert piece in err, piece
    assert not (tmp_path/'run').exists()                  # nothing written

def test_tiny_run_writes_the_contract(tmp_path, monkeypatch):
    monkeypatch.setenv('IN_TEST', '1')   # nbdev_test's switch changes nothing: papermill runs every cell, the run has the sizes asked for
    out = tmp_path/'run'
    pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), parameters=dict(TINY, out_dir=str(out), objective='min_recall'),
                        kernel_name='python3', cwd=str(REPO), progress_bar=False)
    m = json.loads((out/'metrics.json').read_text())
    assert {'config', 'pretrained', 'finetuned', 'history'} <= set(m)
    c = m['config']
    for k in ('dataset', 'objective', 'policy', 'seed', 's', 'split_hash', 'pretrain_hash', 'finetune_hash', 'versions'):
        assert k in c, k
    assert set(c['versions']) >= {'python', 'torch', 'torchvision', 'selmix'}
    bench = load_benchmark('mnist_lt', seed=0)
    assert c['split_hash'] == bench.split_hash and c['seed'] == 0 and c['objective'] == 'min_recall'
    assert c['protocol'] == 'paper' and c['finetune_config']['protocol'] == 'paper' and c['leaks'] == []   # the default
    assert c['finetune_config']['momentum'] == 0 and c['finetune_config']['gain_confusion'] == 'hard' and not c['finetune_config']['frozen']
    assert m['history'][-1]['step'] == 20 and all(math.isfinite(h['objective']) for h in m['history'])
    assert c['finetune_steps'] == 20   # the size asked for, not the smoke run's 40 steps
    printed = ''.join(''.join(o.get('text', '')) for cell in json.loads((tmp_path/'out.ipynb').read_text())['cells']
                      for o in cell.get('outputs', []) if o.get('name') == 'stdout')
    assert 'fine-tuning: step 2/20' in printed and 'fine-tuning: step 20/20' in printed   # progress lines (`make run` shows them)
    for f in ('trajectories.png', 'gains.png', 'recalls.png', 'model.pt'): assert (out/f).exists(), f
    # every reported metric, of both models on both splits, recomputed with sklearn/imblearn/scipy from the models themselves:
    # the pre-trained one from the checkpoint cache the run reused, the fine-tuned one from the run's model.pt
    ck = torch.load(out/'model.pt', weights_only=False)
    model = get_model(arch_of(bench, pretrain_config('mnist_lt', method='la')), bench.num_classes, bench.channels)
    model.load_state_dict(ck['model'])
    pre = pretrained_model(bench, pretrain_config('mnist_lt', seed=0, method='la', steps=100), 'cpu', progress=False)
    assert c['pretrain_hash'] == config_hash(bench, pretrain_config('mnist_lt', seed=0, method='la', steps=100))
    assert not torch.equal(pre.state_dict()['head.weight'], model.state_dict()['head.weight'])   # fine-tuning moved the model
    for stage, net, split in (('pretrained', pre, bench.test), ('finetuned', model, bench.test),
                              ('pretrained_val', pre, bench.val), ('finetuned_val', model, bench.val)):
        assert_report(m[stage], split.y.numpy(), predict(net.eval(), split, bench.prepare, 'cpu').argmax(1).numpy(), bench.num_classes, stage)
    assert m['finetuned_val'] == m['history'][-1]['val']
    # another configuration may not write into this folder
    with pytest.raises(pm.PapermillExecutionError, match='another configuration: objective, finetune_hash differ'):
        pm.execute_notebook(str(NB), str(tmp_path/'out2.ipynb'), parameters=dict(TINY, out_dir=str(out), objective='mean_recall'),
                            kernel_name='python3', cwd=str(REPO), progress_bar=False)
    with pytest.raises(pm.PapermillExecutionError, match='finetune_hash, finetune_steps differ'):   # the field behind the hash
        pm.execute_notebook(str(NB), str(tmp_path/'out2.ipynb'), parameters=dict(TINY, out_dir=str(out), finetune_steps=21),
                            kernel_name='python3', cwd=str(REPO), progress_bar=False)
    # the record: the data's content fingerprint; the plug-in rule on top of the fine-tuned model, recomputed with sklearn
    assert c['data_fingerprint'] == bench.data_fingerprint and len(c['data_fingerprint']) >= 16
    top = m['plugin_on']['finetuned']
    assert list(top) == ['min_recall']                  # SelMix trains for its objective: the rule is fitted for it only
    probs = torch.softmax(predict(model.eval(), bench.test, bench.prepare, 'cpu').double(), 1)
    yr = (probs @ torch.tensor(top['min_recall']['G'], dtype=torch.float64)).argmax(1).numpy()
    np.testing.assert_allclose(top['min_recall']['test']['recalls'], recall_score(bench.test.y.numpy(), yr, average=None), atol=1e-12)

def _fails(tmp_path, *params):
    r = subprocess.run([str(PAPERMILL), str(NB), str(tmp_path/'out.ipynb'), '-k', 'python3', *params],
                       capture_output=True, text=True, env=env(), cwd=REPO)
    assert r.returncode != 0
    return r.stdout + r.stderr

@pytest.mark.parametrize('name,text,what', [('config.json', '[1, 2]', 'holds no run config'),
                                            ('metrics.json', '{}', 'holds no run config')])
def test_a_run_file_of_the_wrong_shape_is_named_as_damaged(tmp_path, name, text, what):
    run = tmp_path/'run'; run.mkdir(); (run/name).write_text(text)
    err = _fails(tmp_path, '-p', 'out_dir', str(run), '-p', 'smoke', 'True')
    assert str(run/name) in err and 'damaged' in err and what in err
    assert 'another configuration' not in err and 'AttributeError' not in err

def test_out_dir_that_is_a_file_or_holds_a_damaged_config_is_named(tmp_path):
    f = tmp_path/'not_a_folder'; f.write_text('x')
    err = _fails(tmp_path, '-p', 'out_dir', str(f), '-p', 'device', 'meta')
    assert "device='meta'" in err                                   # bad parameters first, before touching out_dir
    err = _fails(tmp_path, '-p', 'out_dir', str(f))
    assert 'is an existing file' in err and str(f) in err
    run = tmp_path/'run'; run.mkdir(); (run/'config.json').write_text('{"dataset": "mnist_lt", trunc')
    err = _fails(tmp_path, '-p', 'out_dir', str(run))
    assert str(run/'config.json') in err and 'damaged' in err

def _image_tree(top, per_split=dict(train=12, val=6, test=6), classes=('ant', 'bee', 'cat'), size=12):
    "A tiny ImageFolder tree of grey PNGs whose brightness depends on the class (so a model can learn something)."
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        for k, c in enumerate(classes):
            (top/split/c).mkdir(parents=True)
            for i in range(n):
                a = np.clip(rng.normal(60 + 70*k, 20, (size, size)), 0, 255).astype(np.uint8)
                Image.fromarray(a, 'L').save(top/split/c/f'{i}.png')
    return top

def test_your_model_on_your_folder(tmp_path):
    "Issue 21's done-when: a model file the test writes, fine-tuned on an image folder the test writes."
    tree = _image_tree(tmp_path/'images')
    model = get_model('small_cnn', 3, in_channels=1)
    torch.save(dict(model=model.state_dict(), arch='small_cnn', num_classes=3, in_channels=1), tmp_path/'mine.pt')
    out = tmp_path/'run'
    pm.execute_notebook(str(NB), str(tmp_path/'out.ipynb'), kernel_name='python3', cwd=str(REPO), progress_bar=False,
                        parameters=dict(dataset=f'folder:{tree}', checkpoint=str(tmp_path/'mine.pt'), finetune_steps=6,
                                        objective='min_recall', out_dir=str(out)))
    m = json.loads((out/'metrics.json').read_text())
    c = m['config']
    assert c['checkpoint'] == str((tmp_path/'mine.pt').resolve()) and c['pretrain_hash'].startswith('file:')
    assert c['setting'] == 'supervised (Alg. 2)' and c['dataset'] == f'folder:{tree}' and m['history'][-1]['step'] == 6
    # the pre-trained numbers are the given model's, recomputed here with sklearn on the test folder
    from selmix.data import load_benchmark
    bench = load_benchmark(f'folder:{tree}')
    yp = predict(model.eval(), bench.test, bench.prepare, 'cpu').argmax(1).numpy()
    np.testing.assert_allclose(m['pretrained']['recalls'], recall_score(bench.test.y.numpy(), yp, average=None, labels=range(3)), atol=1e-12)
    # a model of another number of classes is refused, naming both
    torch.save(dict(model=get_model('small_cnn', 5, in_channels=1).state_dict(), arch='small_cnn'), tmp_path/'five.pt')
    err = _fails(tmp_path, '-p', 'dataset', f'folder:{tree}', '-p', 'checkpoint', str(tmp_path/'five.pt'), '-p', 'out_dir', str(tmp_path/'r5'))
    assert 'classifies 5 classes; expected 3' in err
