#!/usr/bin/env python3
"""PyTorch's causal scaled_dot_product_attention at a model's shapes, timed as
`sinklab bench-attention` times sinklab's: forwards back to back, then each backward alone after
its forward. Prints one line in the same format (forward_ms, backward_ms) for
scripts/bench_attention.sh. --backend picks SDPA's kernel (default: PyTorch's choice; on the H200
that is cuDNN's attention)."""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}

p = argparse.ArgumentParser(description=__doc__)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--heads", type=int, default=12)
p.add_argument("--head-size", type=int, default=64)
p.add_argument("--iters", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--backend", choices=["default", *BACKENDS], default="default")
a = p.parse_args()

shape = (a.batch, a.heads, a.seq, a.head_size)
q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
grad = torch.randn(shape, device="cuda", dtype=torch.bfloat16)


def forward():
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    return F.scaled_dot_product_attention(*leaves, is_causal=True)


def run():
    for _ in range(a.warmup):
        forward().backward(grad)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(a.iters):
        forward()
    torch.cuda.synchronize()
    forward_ms = 1e3 * (time.perf_counter() - start) / a.iters
    backward_ms = 0.0
    for _ in range(a.iters):
        out = forward()
        torch.cuda.synchronize()
        start = time.perf_counter()
        out.backward(grad)
        torch.cuda.synchronize()
        backward_ms += 1e3 * (time.perf_counter() - start) / a.iters
    return forward_ms, backward_ms


if a.backend == "default":
    forward_ms, backward_ms = run()
else:
    with sdpa_kernel([BACKENDS[a.backend]]):
        forward_ms, backward_ms = run()
flops = 4.0 * a.batch * a.heads * a.seq * a.seq * a.head_size / 2
print(f"torch sdpa ({a.backend}) bf16 cuda B={a.batch} T={a.seq} NH={a.heads} HS={a.head_size}"
      f" softmax: forward_ms {forward_ms:.3f} backward_ms {backward_ms:.3f}"
      f" forward_tflops {flops / forward_ms / 1e9:.1f}"
      f" backward_tflops {2.5 * flops / backward_ms / 1e9:.1f}")
