"Tests of selmix.models beyond the notebook's checks: STL-sized inputs, batched inference and frozen BatchNorm."
import copy, pickle

import pytest
import torch
import torch.nn as nn

from selmix.data import Augment, Split
from selmix.models import extract_features, freeze_bn, get_model, predict

def test_wrn_on_stl_sized_images():
    m = get_model('wrn28_2', 10, 3).eval()
    with torch.no_grad(): assert m(torch.randn(1, 3, 96, 96)).shape == (1, 10)


def test_batched_inference_equals_one_pass_and_restores_mode():
    torch.manual_seed(0)
    m = get_model('small_cnn', 10, 1).train()
    x = torch.randint(0, 256, (23, 1, 28, 28), dtype=torch.uint8)
    prep = Augment([0.1307], [0.3081])
    f = extract_features(m, Split(x, torch.zeros(23, dtype=torch.long), torch.arange(23)), prep, 'cpu', batch_size=5)
    logits = predict(m, x, prep, 'cpu', batch_size=4)
    assert m.training
    ref = copy.deepcopy(m).eval()
    with torch.no_grad():
        xf = (x.float() / 255 - 0.1307) / 0.3081                # normalisation written out independently
        torch.testing.assert_close(f, ref.features(xf), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits, ref(xf), atol=1e-5, rtol=1e-5)
    assert f.dtype == torch.float32 and f.device.type == 'cpu' and not f.requires_grad


def test_freeze_bn_keeps_running_stats_in_train_mode():
    torch.manual_seed(0)
    m = get_model('resnet32', 10)
    m.train(); m(torch.randn(4, 3, 32, 32))
    ref = copy.deepcopy(m).eval()
    freeze_bn(m); m.train()
    before = {k: v.clone() for k, v in m.state_dict().items() if 'running' in k or 'num_batches' in k}
    x = torch.randn(6, 3, 32, 32) * 2 + 0.5
    out = m(x)
    out.sum().backward()
    for k, v in before.items(): assert torch.equal(m.state_dict()[k], v), k
    with torch.no_grad(): torch.testing.assert_close(out.detach(), ref(x), atol=1e-4, rtol=1e-4)
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns and all(not b.training for b in bns) and all(b.weight.grad is not None for b in bns)
    assert m.training                                  # the rest of the model still trains (e.g. dropout would)
    assert set(pickle.loads(pickle.dumps(m)).state_dict()) == set(ref.state_dict())


def test_without_freeze_bn_stats_move():
    m = get_model('small_cnn', 10, 1).train()
    before = [b.running_mean.clone() for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    m(torch.randn(4, 1, 28, 28) + 3)
    after = [b.running_mean for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


def test_released_wrn_variant_same_tensors_other_wiring():
    from selmix.models import WideResNet, get_model, TorchvisionResNet
    w, r = WideResNet(10), get_model('wrn28_2_released', 10, 3)
    assert [(k, v.shape) for k, v in w.state_dict().items()] == [(k, v.shape) for k, v in r.state_dict().items()]
    assert [b.abr for b in r.body[1:13:4]] == [True, True, True] and [b.abr for b in w.body[1:13:4]] == [True, False, False]
    r.load_state_dict(w.state_dict()); w.eval(); r.eval()
    assert not torch.allclose(w(torch.randn(2, 3, 32, 32)), r(torch.randn(2, 3, 32, 32)))
    assert TorchvisionResNet(3, 1, 'resnet18')(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
