#!/usr/bin/env python3
"""Checks a `sinklab export --format hf` folder with PyTorch alone (CI has no transformers).

Reads config.json as transformers would read it (GPT2Config, LlamaConfig, or sinklab's own
SinklabConfig), builds the model with the folder's own modeling_sinklab.py math when it ships
one (else scripts/hf/modeling_sinklab.py), loads model.safetensors strictly (every tensor used,
none missing, shapes equal) and compares its logits with `sinklab forward`'s.

    python3 scripts/crosscheck_hf_export.py FOLDER FORWARD.safetensors

The proof against transformers itself is scripts/interop_check.py (GPU machine).
"""
import importlib.util
import json
import os
import sys
from types import SimpleNamespace

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from crosscheck_torch import read_safetensors  # noqa: E402


def model_config(c):
    """config.json -> the fields of modeling_sinklab's modules, as transformers reads them."""
    t = c["model_type"]
    if t == "sinklab":
        return SimpleNamespace(**{k: c[k] for k in (
            "arch", "vocab_size", "n_layer", "n_head", "n_embd", "ffn_hidden", "block_size",
            "norm_eps", "rope_theta", "attn_output_norm", "gamma_shared", "attention",
            "isolate_positions", "isolate_layers")}, tie=c.get("tie_word_embeddings", True))
    common = dict(attn_output_norm="none", gamma_shared=False, attention="softmax",
                  isolate_positions=[], isolate_layers=[])
    if t == "gpt2":
        assert c.get("activation_function", "gelu_new") == "gelu_new"
        return SimpleNamespace(arch="gpt2", vocab_size=c["vocab_size"], n_layer=c["n_layer"],
                               n_head=c["n_head"], n_embd=c["n_embd"],
                               ffn_hidden=c.get("n_inner") or 4 * c["n_embd"],
                               block_size=c["n_positions"],
                               norm_eps=c.get("layer_norm_epsilon", 1e-5), rope_theta=0.0,
                               tie=c.get("tie_word_embeddings", True), **common)
    if t == "llama":
        assert c.get("num_key_value_heads", c["num_attention_heads"]) == c["num_attention_heads"]
        rope = c.get("rope_parameters") or {}
        return SimpleNamespace(arch="llama", vocab_size=c["vocab_size"],
                               n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"],
                               n_embd=c["hidden_size"], ffn_hidden=c["intermediate_size"],
                               block_size=c["max_position_embeddings"],
                               norm_eps=c.get("rms_norm_eps", 1e-6),
                               rope_theta=rope.get("rope_theta", c.get("rope_theta", 10000.0)),
                               tie=c.get("tie_word_embeddings", False), **common)
    raise SystemExit(f"unknown model_type {t}")


def modeling_module(folder):
    shipped = os.path.join(folder, "modeling_sinklab.py")
    path = shipped if os.path.exists(shipped) else os.path.join(HERE, "hf", "modeling_sinklab.py")
    spec = importlib.util.spec_from_file_location("modeling_sinklab_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def main():
    folder, forward_file = sys.argv[1], sys.argv[2]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    cfg = model_config(config)
    modeling, modeling_path = modeling_module(folder)
    if config["model_type"] == "sinklab":  # the shipped file must be the tested one
        with open(modeling_path, "rb") as a, open(os.path.join(HERE, "hf", "modeling_sinklab.py"),
                                                  "rb") as b:
            assert a.read() == b.read(), "modeling_sinklab.py differs from scripts/hf/"
    trunk = modeling.SinklabTrunk(cfg).double()
    _, weights = read_safetensors(os.path.join(folder, "model.safetensors"))
    prefix = "model." if cfg.arch == "llama" else "transformer."
    state = {k[len(prefix):]: v.double() for k, v in weights.items() if k.startswith(prefix)}
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    extra = [k for k in weights if not k.startswith(prefix) and k != "lm_head.weight"]
    assert not missing and not unexpected and not extra, (missing, unexpected, extra)
    assert ("lm_head.weight" in weights) == (not cfg.tie), "lm_head.weight vs tie_word_embeddings"
    head = weights["lm_head.weight"].double() if not cfg.tie else trunk.token_embedding().weight
    _, ours = read_safetensors(forward_file)
    ids = ours["ids"].long()
    with torch.no_grad():
        logits = trunk(ids) @ head.t()
        loss = modeling.causal_lm_loss(logits, ids)
    expected = ours["logits"].double()
    err = ((logits - expected).abs().max() / expected.abs().max()).item()
    loss_err = abs(loss.item() - ours["loss"].item())
    ok = err < 1e-4 and loss_err < 1e-4
    print(f"{'PASS' if ok else 'FAIL'} {config['model_type']} ({cfg.arch}, "
          f"{cfg.attn_output_norm}, {cfg.attention}, isolate {cfg.isolate_positions}, "
          f"tied {cfg.tie}): logits max|diff|/max|logit| {err:.1e}, loss {loss.item():.6f} vs "
          f"sinklab {ours['loss'].item():.6f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
