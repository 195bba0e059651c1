"""Tests of selmix.taylor beyond nbs/03_taylor_gain, which checks the directions against autograd, the gains against a
linear ψ and (through the Taylor remainder's slope 2) against ψ itself, and `loglog_slope` by hand: the error messages."""
import pytest
import torch

from selmix.taylor import mixup_directions


def test_mixup_directions_errors():
    with pytest.raises(ValueError, match='weight must be'): mixup_directions(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match='lam'): mixup_directions(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), lam=1.5)
