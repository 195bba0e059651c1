"Worker for tests/test_pretrain.py::test_ddp_ranks_agree: a tiny FixMatch (LA) pre-training under torchrun."
import os, sys
import torch, torch.distributed as dist
from selmix.data import load_benchmark
from selmix.pretrain import PretrainConfig, pretrain

if __name__ == '__main__':
    out, ckpt = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    bench = load_benchmark('mnist_lt', seed=0)
    cfg = PretrainConfig(steps=4, batch_size=8, mu=2, eval_every=2, ckpt_every=2, seed=0)
    model = pretrain(bench, cfg, 'cpu', ckpt, progress=False)
    torch.save(dict(state=model.state_dict(), world=dist.get_world_size(), rank=dist.get_rank()),
               os.path.join(out, f'rank{dist.get_rank()}.pt'))
    dist.destroy_process_group()
