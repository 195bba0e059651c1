"Checkpoint identity: device settings stay out of the key, the dataset's content is in it, and caches of the first release are found by one migration."
import json
from dataclasses import replace, asdict
from types import SimpleNamespace
from pathlib import Path
import pytest, torch
import selmix.pretrain as P
from selmix.pretrain import config_hash, checkpoint_dir, pretrain_config

BENCH = SimpleNamespace(name='mnist_lt', split_hash='abc123', num_classes=10, in_channels=1, image_size=28)
OLD_KEY = 'df07cf005b712947'   # the key the first release gave mnist_lt's preset (its `config_hash` without the data fingerprint)

def bench(name, **kw): return SimpleNamespace(**{**vars(BENCH), 'name': name, **kw})

def test_data_fingerprint_in_key():
    c = pretrain_config('mnist_lt')
    a, b = bench('mnist_lt', data_fingerprint='aa'), bench('mnist_lt', data_fingerprint='bb')
    assert config_hash(a, c) != config_hash(b, c)
    assert config_hash(bench('mnist_lt'), c) == config_hash(bench('mnist_lt', data_fingerprint=''), c)   # none recorded

@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(P, 'data_root', lambda: tmp_path)
    return tmp_path/'checkpoints'

def test_new_folder_when_nothing_cached(root):
    c = pretrain_config('mnist_lt')
    assert checkpoint_dir(bench('mnist_lt'), c) == root/config_hash(bench('mnist_lt'), c)

def first_release_folder(root, name, cfg, b, **extra):
    "A checkpoint folder as the first release left it: under its old key, a final.pt recording config, dataset and split."
    d = root/name; d.mkdir(parents=True)
    torch.save(dict(model={}, arch='small_cnn', num_classes=10, in_channels=1, config=asdict(cfg) | extra,
                    dataset=b.name, split_hash=b.split_hash), d/'final.pt')
    return d

def test_first_release_cache_is_renamed_to_todays_key(root):
    "A folder under an older key is found again by one migration, from the config its final.pt records; then checkpoint_dir points at it."
    from selmix.data import load_benchmark
    from selmix.migrate import migrate_checkpoints
    b, c = load_benchmark('mnist_lt'), pretrain_config('mnist_lt')
    first_release_folder(root, 'a' * 16, c, b)                            # renamed (folders are visited by name)
    first_release_folder(root, OLD_KEY, c, b, amp=True)                   # an --amp run of the same experiment: today's folder exists by then
    first_release_folder(root, 'b' * 16, c, SimpleNamespace(name='mnist_lt', split_hash='other'))   # another split: left alone
    with pytest.warns(UserWarning) as w: moved = migrate_checkpoints(root)
    assert moved == {'a' * 16: config_hash(b, c)} and checkpoint_dir(b, c) == root/config_hash(b, c)
    assert {str(x.message).split(':')[0] for x in w} == {OLD_KEY, 'b' * 16}
    assert migrate_checkpoints(root) == {}


# ---------------------------------------------------------------- starting points for fine-tuning
import torch
from selmix.models import WideResNet, get_model
from selmix.pretrain import starting_model, released_wrn_key

FIXTURE = json.loads((Path(__file__).parent/'fixtures'/'released_wrn28_2_keys.json').read_text())
RELEASED = [(k, tuple(s)) for k, s in FIXTURE['keys']]

def same_state(a, b): return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

def test_released_names_map_onto_ours_one_to_one():
    ours = [(k, tuple(v.shape)) for k, v in WideResNet(FIXTURE['num_classes'], FIXTURE['in_channels']).state_dict().items()]
    assert [(released_wrn_key(k), s) for k, s in RELEASED] == ours

def released_file(path, prefix=''):
    "A released-style checkpoint: a fresh WRN's tensors under the release's names (and the other entries its files hold)."
    src = WideResNet(10, released=True)
    ours = list(src.state_dict().values())
    torch.save(dict(eval_model={prefix + k: v for (k, _), v in zip(RELEASED, ours)},
                    train_model={k: torch.zeros(s) for k, s in RELEASED}, it=1000), path)
    return src

@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_released_checkpoint_loads_its_ema_weights(tmp_path, prefix):
    src = released_file(tmp_path/'model_best.pth', prefix)
    m = starting_model(tmp_path/'model_best.pth', num_classes=10, in_channels=3)
    assert isinstance(m, WideResNet) and same_state(m, src) and not m.training
    assert m.body[5].abr   # built with the release's shortcut wiring
    x = torch.randn(2, 3, 32, 32); src.eval()
    assert torch.equal(m(x), src(x))

def test_released_checkpoint_refused_for_other_classes_or_channels(tmp_path):
    released_file(tmp_path/'r.pth')
    with pytest.raises(ValueError, match='classifies 10 classes; expected 100'): starting_model(tmp_path/'r.pth', num_classes=100)
    with pytest.raises(ValueError, match='takes 3-channel images; expected 1'): starting_model(tmp_path/'r.pth', num_classes=10, in_channels=1)

def test_torchvision_resnet_fc_becomes_the_head(tmp_path):
    from torchvision.models import resnet18
    tv = resnet18(num_classes=3).eval()
    torch.save(tv.state_dict(), tmp_path/'r18.pt')
    m = starting_model(tmp_path/'r18.pt', 'resnet18', num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(m.head.weight, tv.fc.weight) and torch.allclose(m(x), tv(x), atol=1e-6)
    with pytest.raises(ValueError, match='classifies 3 classes; expected 10'): starting_model(tmp_path/'r18.pt', 'resnet18', num_classes=10)
    with pytest.raises(ValueError, match='pass arch'): starting_model(tmp_path/'r18.pt', num_classes=3)
    with pytest.raises(ValueError, match='missing'): starting_model(tmp_path/'r18.pt', 'resnet34', num_classes=3)

def test_package_checkpoints(tmp_path):
    src = get_model('small_cnn', 4, 1)
    torch.save(dict(model=src.state_dict(), arch='small_cnn', num_classes=4, in_channels=1, history=[]), tmp_path/'final.pt')
    assert same_state(starting_model(tmp_path/'final.pt', num_classes=4, in_channels=1), src)
    with pytest.raises(ValueError, match="holds a 'small_cnn' model, not 'wrn28_2'"):
        starting_model(tmp_path/'final.pt', 'wrn28_2', num_classes=4, in_channels=1)
    torch.save(dict(step=10, cfg={}, model=src.state_dict(), opt={}), tmp_path/'finetuned.pt')   # a fine-tuning checkpoint names no arch
    with pytest.raises(ValueError, match='does not name its architecture'): starting_model(tmp_path/'finetuned.pt', num_classes=4, in_channels=1)
    assert same_state(starting_model(tmp_path/'finetuned.pt', 'small_cnn', num_classes=4, in_channels=1), src)

def test_shape_mismatch_names_expected_and_found(tmp_path):
    state = get_model('small_cnn', 4, 1).state_dict()
    state['body.0.0.weight'] = torch.zeros(32, 1, 5, 5)
    torch.save(dict(model=state, arch='small_cnn'), tmp_path/'bad.pt')
    with pytest.raises(ValueError, match=r'body\.0\.0\.weight: expected \(32, 1, 3, 3\), found \(32, 1, 5, 5\)'):
        starting_model(tmp_path/'bad.pt', num_classes=4, in_channels=1)
