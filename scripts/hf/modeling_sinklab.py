"""sinklab's GPT family for transformers: the variants no stock class computes.

`sinklab export --format hf` copies this file into a model folder whose config.json has
model_type "sinklab" (head-wise RMSNorm on each head's attention output, sigmoid attention, the
isolate mask), so that

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

loads it. The math follows docs/SINKS.md; the parameters carry sinklab's (Hugging Face) names, with
GPT-2's Conv1D matrices stored (in, out) as transformers stores them. The functions at the top
need PyTorch alone: scripts/crosscheck_torch.py checks them against sinklab (CI has no
transformers).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

HEADWISE_RMSNORM_EPS = 1e-6  # the head-wise RMSNorm's epsilon (docs/SINKS.md)


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2) + eps) over the last dimension, times weight (when given)."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


def rope(x, theta):
    """Rotary positions on x (B, T, NH, HS), transformers' rotate-half pairing (i, i + HS/2)."""
    _, T, _, HS = x.shape
    half = HS // 2
    freq = theta ** (-torch.arange(0, half, dtype=torch.float64, device=x.device) * 2 / HS)
    angle = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * freq[None, :]
    cos = torch.cat([angle.cos(), angle.cos()], -1).to(x.dtype)[None, :, None, :]
    sin = torch.cat([angle.sin(), angle.sin()], -1).to(x.dtype)[None, :, None, :]
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def attention(q, k, v, sigmoid=False, isolate=()):
    """Causal attention of q, k, v (B, T, NH, HS) -> (B, T, NH, HS).

    softmax: A = softmax(q.k / sqrt(HS)) over the keys a query may see; sigmoid: A = sigmoid of
    the same scores, zero where it may not see. A query in `isolate` sees only its own key.
    """
    T, HS = q.shape[1], q.shape[3]
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # (B, NH, T, HS)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(HS)  # (B, NH, T, T)
    allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    for pos in isolate:
        if pos < T:
            allowed[pos, :pos] = False
    if sigmoid:
        probs = torch.sigmoid(scores) * allowed
    else:
        probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return (probs @ vh).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Modules named as sinklab names its parameters.

def _weight(*shape, std=0.02):
    return nn.Parameter(torch.randn(*shape) * std)


class _Affine(nn.Module):
    """x @ W^T + b, W stored (out, in) as nn.Linear does, or (in, out) as GPT-2's Conv1D does."""

    def __init__(self, n_in, n_out, bias, conv1d):
        super().__init__()
        self.conv1d = conv1d
        self.weight = _weight(*((n_in, n_out) if conv1d else (n_out, n_in)))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x):
        w = self.weight.t() if self.conv1d else self.weight
        return F.linear(x, w, self.bias)


class _Norm(nn.Module):
    """LayerNorm (GPT-2) or RMSNorm (LLaMA) over the channels."""

    def __init__(self, channels, eps, layer_norm):
        super().__init__()
        self.eps, self.layer_norm = eps, layer_norm
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if layer_norm else None

    def forward(self, x):
        if self.layer_norm:
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return rms_norm(x, self.weight, self.eps)


class _HeadNorm(nn.Module):
    """Head-wise RMSNorm: each head's output normalised over its HS values, gamma (NH, HS) or
    shared (HS)."""

    def __init__(self, n_head, head_size, shared):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(head_size) if shared else torch.ones(n_head, head_size))

    def forward(self, o):  # (B, T, NH, HS)
        return rms_norm(o, self.weight, HEADWISE_RMSNORM_EPS)


class _Attention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        C, NH = cfg.n_embd, cfg.n_head
        self.cfg, self.layer = cfg, layer
        if cfg.arch == "llama":
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(self, name, _Affine(C, C, False, False))
        else:
            self.c_attn = _Affine(C, 3 * C, True, True)
            self.c_proj = _Affine(C, C, True, True)
        if cfg.attn_output_norm == "headwise_rmsnorm":
            self.head_norm = _HeadNorm(NH, C // NH, cfg.gamma_shared)

    def forward(self, h):  # (B, T, C)
        cfg = self.cfg
        B, T, C = h.shape
        NH = cfg.n_head
        HS = C // NH
        if cfg.arch == "llama":
            q = rope(self.q_proj(h).view(B, T, NH, HS), cfg.rope_theta)
            k = rope(self.k_proj(h).view(B, T, NH, HS), cfg.rope_theta)
            v = self.v_proj(h).view(B, T, NH, HS)
        else:
            q, k, v = (t.reshape(B, T, NH, HS) for t in self.c_attn(h).split(C, dim=2))
        isolated = not cfg.isolate_layers or self.layer in cfg.isolate_layers
        o = attention(q, k, v, cfg.attention == "sigmoid",
                      cfg.isolate_positions if isolated else ())
        if cfg.attn_output_norm == "headwise_rmsnorm":
            o = self.head_norm(o)
        out = self.o_proj if cfg.arch == "llama" else self.c_proj
        return out(o.reshape(B, T, C))


class _Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, Fw = cfg.n_embd, cfg.ffn_hidden
        self.llama = cfg.arch == "llama"
        if self.llama:
            self.gate_proj = _Affine(C, Fw, False, False)
            self.up_proj = _Affine(C, Fw, False, False)
            self.down_proj = _Affine(Fw, C, False, False)
        else:
            self.c_fc = _Affine(C, Fw, True, True)
            self.c_proj = _Affine(Fw, C, True, True)

    def forward(self, h):
        if self.llama:
            return self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return self.c_proj(F.gelu(self.c_fc(h), approximate="tanh"))


class _Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        layer_norm = cfg.arch != "llama"
        norms = ("ln_1", "ln_2") if layer_norm else ("input_layernorm", "post_attention_layernorm")
        self._norm_names = norms
        for name in norms:
            setattr(self, name, _Norm(cfg.n_embd, cfg.norm_eps, layer_norm))
        if layer_norm:
            self.attn = _Attention(cfg, layer)
        else:
            self.self_attn = _Attention(cfg, layer)
        self.mlp = _Mlp(cfg)

    def forward(self, x):
        attn = self.self_attn if hasattr(self, "self_attn") else self.attn
        x = x + attn(getattr(self, self._norm_names[0])(x))
        return x + self.mlp(getattr(self, self._norm_names[1])(x))


class SinklabTrunk(nn.Module):
    """Embeddings, blocks and the final norm, named as transformers' GPT-2 ("transformer.")
    or LLaMA ("model.") names them."""

    def __init__(self, cfg):
        super().__init__()
        self.llama = cfg.arch == "llama"
        if self.llama:
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.layers = nn.ModuleList(_Block(cfg, l) for l in range(cfg.n_layer))
            self.norm = _Norm(cfg.n_embd, cfg.norm_eps, False)
        else:
            self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.h = nn.ModuleList(_Block(cfg, l) for l in range(cfg.n_layer))
            self.ln_f = _Norm(cfg.n_embd, cfg.norm_eps, True)

    def token_embedding(self):
        return self.embed_tokens if self.llama else self.wte

    def forward(self, ids):  # (B, T) -> (B, T, C)
        if self.llama:
            x = self.embed_tokens(ids)
            for block in self.layers:
                x = block(x)
            return self.norm(x)
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))[None]
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


def causal_lm_loss(logits, labels):
    """transformers' causal-LM loss: position t predicts labels[t + 1]; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                           labels[:, 1:].reshape(-1), ignore_index=-100)


# ---------------------------------------------------------------------------------------------
# transformers' classes. Without transformers (CI), the math above is all there is.
try:
    from transformers import GenerationMixin, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutputWithPast
    try:
        from transformers import PreTrainedConfig
    except ImportError:  # transformers 4
        from transformers import PretrainedConfig as PreTrainedConfig
    HAVE_TRANSFORMERS = True
except ImportError:
    HAVE_TRANSFORMERS = False

if HAVE_TRANSFORMERS:
    class SinklabConfig(PreTrainedConfig):
        model_type = "sinklab"
        # The names generation and other utilities ask for.
        attribute_map = {"num_hidden_layers": "n_layer", "hidden_size": "n_embd",
                         "num_attention_heads": "n_head", "max_position_embeddings": "block_size"}

        def __init__(self, arch="gpt2", vocab_size=256, n_layer=2, n_head=2, n_embd=64,
                     ffn_hidden=256, block_size=128, norm_eps=1e-5, rope_theta=10000.0,
                     attn_output_norm="none", gamma_shared=False, attention="softmax",
                     isolate_positions=(), isolate_layers=(), tie_word_embeddings=True,
                     **kwargs):
            self.arch, self.vocab_size, self.n_layer = arch, vocab_size, n_layer
            self.n_head, self.n_embd, self.ffn_hidden = n_head, n_embd, ffn_hidden
            self.block_size, self.norm_eps, self.rope_theta = block_size, norm_eps, rope_theta
            self.attn_output_norm, self.gamma_shared = attn_output_norm, gamma_shared
            self.attention = attention
            self.isolate_positions = list(isolate_positions)
            self.isolate_layers = list(isolate_layers)
            self.tie_word_embeddings = tie_word_embeddings
            kwargs.setdefault("use_cache", False)  # the model keeps no key/value cache
            super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    class SinklabForCausalLM(PreTrainedModel, GenerationMixin):
        config_class = SinklabConfig
        base_model_prefix = "sinklab"  # no module of that name: checkpoint keys load as they are
        _no_split_modules = ["_Block"]

        def __init__(self, config):
            super().__init__(config)
            trunk = SinklabTrunk(config)
            if config.arch == "llama":
                self.model = trunk
            else:
                self.transformer = trunk
            # A tied head is the token embedding itself: no lm_head parameter, nothing to re-tie.
            if not config.tie_word_embeddings:
                self.lm_head = _Affine(config.n_embd, config.vocab_size, False, False)
            self.post_init()

        def _init_weights(self, module):  # every weight is made in __init__ or loaded
            pass

        def trunk(self):
            return self.model if self.config.arch == "llama" else self.transformer

        def get_input_embeddings(self):
            return self.trunk().token_embedding()

        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            x = self.trunk()(input_ids)
            head = (self.trunk().token_embedding().weight if self.config.tie_word_embeddings
                    else self.lm_head.weight)
            logits = F.linear(x, head)
            loss = causal_lm_loss(logits, labels) if labels is not None else None
            return CausalLMOutputWithPast(loss=loss, logits=logits)

        def prepare_inputs_for_generation(self, input_ids, **kwargs):
            # No key/value cache: every step runs the whole (cropped) context.
            return {"input_ids": input_ids[:, -self.config.block_size:]}
