"Tests of selmix.models beyond nbs/05_models (which checks shapes, batched inference and frozen BatchNorm): STL-sized inputs, the released WRN's wiring."
import torch

from selmix.models import get_model

def test_wrn_on_stl_sized_images():
    m = get_model('wrn28_2', 10, 3).eval()
    with torch.no_grad(): assert m(torch.randn(1, 3, 96, 96)).shape == (1, 10)


def test_released_wrn_variant_same_tensors_other_wiring():
    from selmix.models import WideResNet, get_model, TorchvisionResNet
    w, r = WideResNet(10), get_model('wrn28_2_released', 10, 3)
    assert [(k, v.shape) for k, v in w.state_dict().items()] == [(k, v.shape) for k, v in r.state_dict().items()]
    assert [b.abr for b in r.body[1:13:4]] == [True, True, True] and [b.abr for b in w.body[1:13:4]] == [True, False, False]
    r.load_state_dict(w.state_dict()); w.eval(); r.eval()
    assert not torch.allclose(w(torch.randn(2, 3, 32, 32)), r(torch.randn(2, 3, 32, 32)))
    assert TorchvisionResNet(3, 1, 'resnet18')(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
