#!/usr/bin/env python3
"""Independent PyTorch implementation of sinklab's GPT family, checked against sinklab.

Reads a file written by `sinklab export-reference` (safetensors: weights with Hugging Face names,
one batch, sinklab's logits, loss and gradients), rebuilds the same model in plain PyTorch
(written from docs/SINKS.md, not from sinklab's code), and compares logits, loss and every
parameter gradient.  Exit code 0 when all agree within tolerance, 1 otherwise.

    python3 scripts/crosscheck_torch.py ref.safetensors [--device cuda] [--rtol 1e-4]
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

# The attention, RoPE and RMSNorm of the model file an export ships (transformers loads it with
# trust_remote_code): checked here against sinklab, so the exported model computes what was tested.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf"))
from modeling_sinklab import HEADWISE_RMSNORM_EPS, attention, rms_norm, rope  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32,
              "BF16": torch.bfloat16}
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        t = torch.frombuffer(raw, dtype=dtypes[info["dtype"]]) if raw else torch.empty(0)
        tensors[name] = t.reshape(info["shape"]).clone()
    return meta, tensors


def forward(meta, W, ids, targets):
    llama = meta["arch"] == "llama"
    L, NH, C = int(meta["n_layer"]), int(meta["n_head"]), int(meta["n_embd"])
    HS, eps = C // NH, float(meta["norm_eps"])
    theta = float(meta["rope_theta"])
    sigmoid = meta["attention"] == "sigmoid"
    headwise = meta["attn_output_norm"] == "headwise_rmsnorm"
    isolate = [int(p) for p in meta["isolate_positions"].split(",") if p]
    B, T = ids.shape
    ids = ids.long()

    def norm(prefix, x):
        if llama:
            return rms_norm(x, W[prefix + "weight"], eps)
        return F.layer_norm(x, (C,), W[prefix + "weight"], W[prefix + "bias"], eps)

    def lin(x, name, bias=True):
        b = W.get(name + ".bias") if bias and not llama else None
        return F.linear(x, W[name + ".weight"], b)

    if llama:
        x = W["model.embed_tokens.weight"][ids]
    else:
        x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T]
    for l in range(L):
        pre = f"model.layers.{l}." if llama else f"transformer.h.{l}."
        h = norm(pre + ("input_layernorm." if llama else "ln_1."), x)
        if llama:
            a = pre + "self_attn."
            q = rope(lin(h, a + "q_proj").view(B, T, NH, HS), theta)
            k = rope(lin(h, a + "k_proj").view(B, T, NH, HS), theta)
            v = lin(h, a + "v_proj").view(B, T, NH, HS)
        else:
            a = pre + "attn."
            q, k, v = (t.reshape(B, T, NH, HS) for t in lin(h, a + "c_attn").split(C, dim=2))
        o = attention(q, k, v, sigmoid, isolate)
        if headwise:  # RMS over the head dimension, gamma (NH, HS) or shared (HS)
            o = rms_norm(o, W[a + "head_norm.weight"], HEADWISE_RMSNORM_EPS)
        x = x + lin(o.reshape(B, T, C), a + ("o_proj" if llama else "c_proj"))
        h = norm(pre + ("post_attention_layernorm." if llama else "ln_2."), x)
        m = pre + "mlp."
        if llama:
            u = F.silu(lin(h, m + "gate_proj")) * lin(h, m + "up_proj")
            x = x + lin(u, m + "down_proj")
        else:
            u = F.gelu(lin(h, m + "c_fc"), approximate="tanh")
            x = x + lin(u, m + "c_proj")
    x = norm("model.norm." if llama else "transformer.ln_f.", x)
    head = W.get("lm_head.weight")
    if head is None:
        head = W["model.embed_tokens.weight" if llama else "transformer.wte.weight"]
    logits = F.linear(x, head)
    loss = F.cross_entropy(logits.reshape(B * T, -1), targets.long().reshape(-1),
                           ignore_index=-1)
    return logits, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rtol", type=float, default=2e-4)
    parser.add_argument("--atol", type=float, default=2e-5)
    parser.add_argument("--dtype", default="float64", help="PyTorch compute dtype")
    args = parser.parse_args()
    meta, tensors = read_safetensors(args.reference)
    dtype = getattr(torch, args.dtype)
    if args.device == "cuda":  # full-precision matmuls for a fair comparison
        torch.backends.cuda.matmul.allow_tf32 = False
    names = [n for n in tensors if not n.startswith(("grad.", "input.", "output."))]
    W = {n: tensors[n].to(args.device, dtype).requires_grad_(True) for n in names}
    ids = tensors["input.ids"].to(args.device)
    targets = tensors["input.targets"].to(args.device)
    logits, loss = forward(meta, W, ids, targets)
    loss.backward()

    def compare(what, ours, theirs):
        ours, theirs = ours.double().cpu(), theirs.detach().double().cpu()
        err = (ours - theirs).abs()
        tol = args.atol + args.rtol * theirs.abs()
        worst = (err / tol).max().item() if err.numel() else 0.0
        ok = worst <= 1.0
        print(f"{'ok  ' if ok else 'FAIL'} {what:60s} max abs err {err.max().item():.3e} "
              f"(tolerance used {worst * 100:5.1f}%)")
        return ok

    desc = (f"{meta['arch']} L={meta['n_layer']} C={meta['n_embd']} NH={meta['n_head']} "
            f"attn_output_norm={meta['attn_output_norm']} attention={meta['attention']} "
            f"isolate=[{meta['isolate_positions']}] on {args.device} ({args.dtype})")
    print(f"cross-check: {desc}")
    ok = compare("logits", tensors["output.logits"], logits)
    ok &= compare("loss", tensors["output.loss"], loss)
    for n in names:
        ok &= compare("grad " + n, tensors["grad." + n], W[n].grad)
    print("PASS" if ok else "FAIL", desc)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
