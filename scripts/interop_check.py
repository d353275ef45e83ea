#!/usr/bin/env python3
"""Proves sinklab's Hugging Face export and import against transformers itself (GPU machine:
transformers, torch and safetensors are installed there; CI has no transformers).

  export   sinklab trains a tiny GPT-2 and a tiny LLaMA for a few steps, exports each with
           `sinklab export --format hf`, and transformers' AutoModelForCausalLM /
           AutoTokenizer.from_pretrained load the folder as is; the logits and loss on the same
           tokens must equal sinklab's (`sinklab forward`) within fp32 tolerance, and the
           tokenizer must give sinklab's ids. Head-wise RMSNorm, sigmoid attention and the
           isolate mask load through the shipped modeling_sinklab.py (trust_remote_code=True).
  import   transformers creates (random init) and saves a GPT2LMHeadModel and a LlamaForCausalLM
           (tied and untied heads); `sinklab forward` on the saved folder must give transformers'
           logits and loss.

    python3 scripts/interop_check.py --sinklab build-gpu/sinklab [--work /tmp/interop]

Exit code 0 when every comparison agrees, 1 otherwise. Prints one line per comparison.
"""
import argparse
import array
import os
import random
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crosscheck_torch  # noqa: E402  (its safetensors reader)

TOLERANCE = 2e-4  # max |difference| of logits relative to max |logit|, fp32 on the CPU


def read_safetensors(path):
    return crosscheck_torch.read_safetensors(path)[1]  # the tensors, without the metadata


def write_shard(path, tokens):  # llm.c format, as sinklab's data loader reads it
    header = array.array("i", [0] * 256)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(array.array("H", tokens).tobytes())


def run(cmd):
    print("  $ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}")
    return result.stdout


def sinklab_forward(args, model_dir, ids, out):
    run([args.sinklab, "forward", model_dir, "--ids", ",".join(map(str, ids)), "--out", out])
    t = read_safetensors(out)
    return t["logits"][0].double(), float(t["loss"])


def transformers_forward(model_dir, ids, remote_code=False):
    from transformers import AutoModelForCausalLM
    extra = {"trust_remote_code": True} if remote_code else {"attn_implementation": "eager"}
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, **extra)
    model.eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model(input_ids=x, labels=x)
    return out.logits[0].double(), float(out.loss), type(model).__name__


def compare(label, ours, theirs, loss_ours, loss_theirs):
    scale = theirs.abs().max().item()
    diff = (ours[:, :theirs.shape[1]] - theirs).abs().max().item() / max(scale, 1e-30)
    # The padded vocabulary of a sinklab model is the model's; transformers' config holds it too.
    same_shape = tuple(ours.shape) == tuple(theirs.shape)
    loss_diff = abs(loss_ours - loss_theirs)
    ok = same_shape and diff < TOLERANCE and loss_diff < 1e-4 * max(1.0, abs(loss_theirs))
    print(f"{'PASS' if ok else 'FAIL'} {label}: logits {tuple(ours.shape)} vs {tuple(theirs.shape)}, "
          f"max|diff|/max|logit| {diff:.2e}, loss sinklab {loss_ours:.6f} transformers "
          f"{loss_theirs:.6f}", flush=True)
    return ok


def export_check(args, arch, tie, variant=()):
    """variant: extra --set overrides (head-wise RMSNorm etc.: SinklabForCausalLM, remote code)."""
    name = "_".join([arch, "tied" if tie else "untied"] + [v.split("=")[0].split(".")[-1] for v in variant])
    work = os.path.join(args.work, f"export_{name}")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    rng = random.Random(7)
    write_shard(os.path.join(data, "train_000000.bin"), [rng.randrange(256) for _ in range(20000)])
    write_shard(os.path.join(data, "val_000000.bin"), [rng.randrange(256) for _ in range(4000)])
    run([args.sinklab, "train", "configs/tiny_test.yaml", "--no-progress",
         "--set", f"data.dir={data}", "--set", "data.tokenizer=byte",
         "--set", f"model.arch={arch}", "--set", "model.n_layer=2", "--set", "model.n_head=4",
         "--set", "model.n_embd=64", "--set", "model.block_size=32",
         "--set", f"model.tie_embeddings={'true' if tie else 'false'}",
         "--set", "train.steps=4", "--set", "train.eval_every=0", "--set", "metrics.every=0",
         "--set", "train.sample_tokens=0", "--set", "metrics.rank_sequences=0",
         "--set", f"run.out_dir={work}", "--set", "run.name=run"]
        + [a for v in variant for a in ("--set", v)])
    checkpoint = os.path.join(work, "run", "main", "ckpt", "step_00000004.h5")
    folder = os.path.join(work, "hf")
    run([args.sinklab, "export", checkpoint, "--format", "hf", "--out", folder])
    ids = [random.Random(3).randrange(256) for _ in range(32)]
    ours, loss_ours = sinklab_forward(args, checkpoint, ids, os.path.join(work, "sinklab.safetensors"))
    theirs, loss_theirs, cls = transformers_forward(folder, ids, remote_code=bool(variant))
    ok = compare(f"export {name} -> {cls}.from_pretrained", ours, theirs, loss_ours, loss_theirs)
    if variant:  # generate() runs through the shipped model file too
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        out = model.generate(torch.tensor([ids[:4]]), max_new_tokens=4, do_sample=False)
        print(f"PASS export {name}: generate() gives {out.shape[1] - 4} new tokens", flush=True)
    tokenizer_json = os.path.join(folder, "tokenizer.json")
    if os.path.exists(tokenizer_json):
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(folder)
        text = "The whale, the sea; 1851 -- café \u00e9t\u00e9\n\tend."
        expected = list(text.encode("utf-8"))  # the byte tokenizer: ids are the bytes
        got = tok(text)["input_ids"]
        same = got == expected
        print(f"{'PASS' if same else 'FAIL'} export {arch}: AutoTokenizer gives sinklab's ids "
              f"({len(got)} tokens)", flush=True)
        ok = ok and same
    else:
        print(f"FAIL export {arch}: no tokenizer.json in {folder}", flush=True)
        ok = False
    return ok


def import_check(args, arch, tie):
    import transformers
    torch.manual_seed(11)
    if arch == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64,
                                         vocab_size=300, tie_word_embeddings=tie)
    else:
        config = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=4, hidden_size=64,
                                          intermediate_size=176, max_position_embeddings=64,
                                          vocab_size=300, tie_word_embeddings=tie,
                                          rope_theta=10000.0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # non-trivial norms and biases, so a mix-up cannot hide
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    folder = os.path.join(args.work, f"import_{arch}_{'tied' if tie else 'untied'}")
    model.save_pretrained(folder, safe_serialization=True)
    ids = [random.Random(5).randrange(300) for _ in range(40)]
    ours, loss_ours = sinklab_forward(args, folder, ids, os.path.join(folder, "sinklab.safetensors"))
    theirs, loss_theirs, cls = transformers_forward(folder, ids)
    return compare(f"import {cls} ({'tied' if tie else 'untied'}) -> sinklab", ours, theirs,
                   loss_ours, loss_theirs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sinklab", default="build/sinklab")
    p.add_argument("--work", default="/tmp/sinklab_interop")
    args = p.parse_args()
    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", flush=True)
    os.makedirs(args.work, exist_ok=True)
    results = []
    for arch in ("gpt2", "llama"):
        for tie in (True, False):
            results.append(export_check(args, arch, tie))
            results.append(import_check(args, arch, tie))
    for arch, variant in (("gpt2", ("model.attn_output_norm=headwise_rmsnorm",)),
                          ("llama", ("model.attn_output_norm=headwise_rmsnorm",
                                     "model.attention=sigmoid")),
                          ("llama", ("model.isolate_positions=[0,2]",))):
        results.append(export_check(args, arch, True, variant))
    print(f"{sum(results)}/{len(results)} comparisons agree")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
