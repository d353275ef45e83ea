#!/usr/bin/env python3
"""PyTorch reference for scripts/bench_gpu.sh: training tokens/s of the same GPT model.

nanoGPT-style GPT-2 (LayerNorm, learned positions, GELU-tanh, biases, tied embeddings) or the
LLaMA-style model of SINKS.md (RMSNorm, RoPE, SwiGLU, optional head-wise RMSNorm), trained with
fused AdamW on random tokens; eager or torch.compile; bf16 autocast or fp32.
`--device cpu` (scripts/bench_cpu.sh) runs fp32 on the CPU with `--threads` threads and works
with PyTorch 1.13 (Debian): without scaled_dot_product_attention, attention is the explicit
masked softmax; AdamW is the plain (non-fused) one, as fused AdamW is CUDA only there.
Prints one line: `torch <mode> <dtype> tok/s <x> mfu <y>`.
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(q, k, v):  # (B, NH, T, HS) each, causal
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]  # PyTorch < 2.0: the T x T scores, masked, softmaxed
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, NH, T, T)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1)
    return att @ v


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        C, self.nh, self.llama, self.headwise = a.n_embd, a.n_head, a.arch == "llama", a.headwise
        Norm = (lambda c: nn.RMSNorm(c, eps=1e-6)) if self.llama else nn.LayerNorm
        self.ln1, self.ln2 = Norm(C), Norm(C)
        self.qkv = nn.Linear(C, 3 * C, bias=not self.llama)
        self.proj = nn.Linear(C, C, bias=not self.llama)
        F_ = a.ffn
        if self.llama:
            self.gate, self.up = nn.Linear(C, F_, bias=False), nn.Linear(C, F_, bias=False)
            self.down = nn.Linear(F_, C, bias=False)
        else:
            self.fc, self.fc_proj = nn.Linear(C, F_), nn.Linear(F_, C)
        if self.headwise:
            self.gamma = nn.Parameter(torch.full((self.nh, C // self.nh), 0.02 * math.sqrt(C)))

    def rope(self, x):  # (B, NH, T, HS)
        T, HS = x.shape[-2], x.shape[-1]
        freq = 10000.0 ** (-torch.arange(0, HS // 2, device=x.device, dtype=torch.float32) * 2 / HS)
        ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * freq
        cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
        rot = torch.cat([-x[..., HS // 2:], x[..., :HS // 2]], -1)
        return x * cos + rot * sin

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        if self.llama:
            q, k = self.rope(q), self.rope(k)
        o = attention(q, k, v)  # (B, NH, T, HS)
        if self.headwise:
            o = o * torch.rsqrt(o.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(o.dtype)
            o = o * self.gamma[None, :, None, :].to(o.dtype)
        x = x + self.proj(o.transpose(1, 2).reshape(B, T, C))
        h = self.ln2(x)
        if self.llama:
            return x + self.down(F.silu(self.gate(h)) * self.up(h))
        return x + self.fc_proj(F.gelu(self.fc(h), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.llama = a.arch == "llama"
        self.wte = nn.Embedding(a.vocab, a.n_embd)
        self.wpe = None if self.llama else nn.Embedding(a.block, a.n_embd)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.n_layer))
        self.ln_f = nn.RMSNorm(a.n_embd, eps=1e-6) if self.llama else nn.LayerNorm(a.n_embd)

    def forward(self, idx, targets):
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="gpt2")
    p.add_argument("--n_layer", type=int, default=12)
    p.add_argument("--n_head", type=int, default=12)
    p.add_argument("--n_embd", type=int, default=768)
    p.add_argument("--ffn", type=int, default=0)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--headwise", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--peak_tflops", type=float, default=989.5)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the median")
    a = p.parse_args()
    a.ffn = a.ffn or 4 * a.n_embd
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = a.device
    cpu = dev == "cpu"
    if cpu:
        torch.set_num_threads(a.threads or len(os.sched_getaffinity(0)))
        if a.dtype != "fp32":
            p.error("--device cpu runs fp32 only")
    model = GPT(a).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95),
                            **({} if cpu else {"fused": True}))
    sync = (lambda: None) if cpu else torch.cuda.synchronize
    step_fn = torch.compile(model) if a.compile else model
    n_params = sum(p.numel() for p in model.parameters())
    if model.wpe is not None:
        n_params -= model.wpe.weight.numel()
    flops_per_token = 6 * n_params + 12 * a.n_layer * a.n_embd * a.block
    g = torch.Generator(device=dev).manual_seed(0)
    times = []
    for step in range(a.steps):
        idx = torch.randint(0, a.vocab, (a.batch, a.block), device=dev, generator=g)
        tgt = torch.randint(0, a.vocab, (a.batch, a.block), device=dev, generator=g)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = step_fn(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t0)
    t = sorted(times[a.warmup:])[len(times[a.warmup:]) // 2]
    tok_s = a.batch * a.block / t
    mode = "compile" if a.compile else "eager"
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else float("nan")
    print(f"torch {mode} {a.dtype} tok/s {tok_s:.0f} mfu {tok_s * flops_per_token / (a.peak_tflops * 1e12) * 100:.1f}%"
          f" peak_mib {peak:.0f}")


if __name__ == "__main__":
    main()
