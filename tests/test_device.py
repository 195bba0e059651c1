"Device settings are decisions of the device: checked on CPU, and on a stand-in CUDA device object."
import warnings
from types import SimpleNamespace
import pytest, torch
from selmix.pretrain import device_settings, PretrainConfig, _amp_parts

CUDA = SimpleNamespace(type='cuda')

def test_cpu_all_off():
    for amp in (None, True, False):
        assert device_settings('cpu', amp, True) == dict(amp=False, cudnn_benchmark=False, channels_last=False, compile=False)
    assert device_settings(torch.device('cpu'))['amp'] is False

def test_cuda_defaults_on():
    assert device_settings(CUDA) == dict(amp=True, cudnn_benchmark=True, channels_last=True, compile=False)
    assert device_settings('cuda:0')['amp'] is True   # a name is enough: no GPU is touched
    assert device_settings(CUDA, amp=False)['amp'] is False
    assert device_settings(CUDA, compile=True)['compile'] is True

def test_amp_requested_on_cpu_warns_and_is_off():
    with pytest.warns(UserWarning, match='needs a CUDA device'):
        s, scaler = _amp_parts(PretrainConfig(amp=True), torch.device('cpu'), 0)
    assert s['amp'] is False and scaler is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s, scaler = _amp_parts(PretrainConfig(), torch.device('cpu'), 0)   # the default asks nothing: no warning

def test_bad_amp_rejected():
    with pytest.raises(ValueError, match='amp'): PretrainConfig(amp='yes')
    with pytest.raises(ValueError, match='compile'): PretrainConfig(compile=1)
