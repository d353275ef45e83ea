#!/usr/bin/env python3
"""Writes a Bigram-Backcopy (BB) data set as llm.c-format shards (Python 3 stdlib only).

The BB task of Guo et al. 2024 ("Active-Dormant Attention Heads: Mechanistically Demystifying
Extreme-Token Phenomena in LLMs", arXiv 2410.13835), in which small transformers grow an
attention sink and massive norms on the BOS token. Every document has exactly --doc-len tokens:

    x[0] = BOS (token 0)
    x[1] ~ uniform over the ordinary (non-trigger) tokens
    x[t] = x[t-2]              if x[t-1] is a trigger token (back-copy: deterministic)
    x[t] ~ P(. | x[t-1])       otherwise (a fixed random bigram chain)

Token ids: 0 = BOS, 1 .. V-K-1 ordinary tokens, V-K .. V-1 the K trigger tokens. P is fixed by
--seed (not per document). Each ordinary token's row puts mass 1 - q on --support ordinary
successors with Dirichlet(--alpha) weights (sparse rows, so the bigram part is learnable) and mass
q = --trigger-mass on the triggers (Dirichlet(1) split). P never emits BOS, and the token before a
trigger is always ordinary, so the copied token is ordinary too (no trigger follows a trigger).

Use it with data.window_stride = --doc-len = model.block_size + 1, so every training window is
one whole document with BOS at position 0 (configs/bigram_backcopy.yaml):

    python3 scripts/make_bigram_backcopy.py data/bigram_backcopy --doc-len 33

Writes <dir>/train_000000.bin, <dir>/val_000000.bin (256 x int32 header: magic 20240520,
version 1, token count; then uint16 tokens) and <dir>/bb_task.json (the parameters, the
transition matrix and the Bayes-optimal loss, i.e. the best val loss any model can reach on the
loader's targets). Same arguments, same bytes.
"""
import argparse
import array
import bisect
import itertools
import json
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bench_data import write_shard  # noqa: E402  (llm.c shard writer, shared)

BOS = 0


def dirichlet(rng, n, alpha):
    g = [rng.gammavariate(alpha, 1.0) for _ in range(n)]
    s = sum(g)
    if s <= 0.0:  # all underflowed (tiny alpha): put the mass on one entry
        g = [0.0] * n
        g[rng.randrange(n)] = 1.0
        s = 1.0
    return [x / s for x in g]


def transition_matrix(rng, vocab, n_triggers, support, alpha, trigger_mass):
    """Rows for ordinary tokens: {successor: probability}. Trigger rows are never used."""
    ordinary = list(range(1, vocab - n_triggers))
    triggers = list(range(vocab - n_triggers, vocab))
    rows = {}
    for a in ordinary:
        succ = rng.sample(ordinary, min(support, len(ordinary)))
        w = dirichlet(rng, len(succ), alpha)
        tw = dirichlet(rng, len(triggers), 1.0)
        row = {b: (1.0 - trigger_mass) * p for b, p in zip(succ, w)}
        for b, p in zip(triggers, tw):
            row[b] = row.get(b, 0.0) + trigger_mass * p
        rows[a] = row
    return ordinary, triggers, rows


class Sampler:
    def __init__(self, rows):
        self.rows = {}
        for a, row in rows.items():
            items = sorted(row.items())
            toks = [b for b, _ in items]
            cum = list(itertools.accumulate(p for _, p in items))
            self.rows[a] = (toks, cum)

    def draw(self, rng, a):
        toks, cum = self.rows[a]
        i = bisect.bisect_right(cum, rng.random() * cum[-1])
        return toks[min(i, len(toks) - 1)]


def make_documents(rng, n_docs, doc_len, ordinary, trigger_set, sampler, rows, stats):
    """Returns uint16 tokens of n_docs documents; adds -log p of every target to stats."""
    out = array.array("H")
    log_first = math.log(len(ordinary))
    for _ in range(n_docs):
        doc = [BOS, ordinary[rng.randrange(len(ordinary))]]
        stats["nll"] += log_first
        stats["targets"] += 1
        while len(doc) < doc_len:
            prev = doc[-1]
            if prev in trigger_set:
                doc.append(doc[-2])  # back-copy: loss 0 for a perfect model
                stats["copies"] += 1
            else:
                nxt = sampler.draw(rng, prev)
                stats["nll"] -= math.log(rows[prev][nxt])
                doc.append(nxt)
            stats["targets"] += 1
        out.extend(doc[:doc_len])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--vocab", type=int, default=64, help="V, including BOS and the triggers")
    p.add_argument("--triggers", type=int, default=3, help="K trigger tokens (ids V-K .. V-1)")
    p.add_argument("--doc-len", type=int, default=33, help="tokens per document = block_size + 1")
    p.add_argument("--train-docs", type=int, default=100000)
    p.add_argument("--val-docs", type=int, default=2000)
    p.add_argument("--support", type=int, default=8,
                   help="ordinary successors per row of the bigram matrix")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of a row")
    p.add_argument("--trigger-mass", type=float, default=0.15,
                   help="probability that an ordinary token is followed by a trigger")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not 4 <= a.vocab <= 65536:
        p.error("--vocab must be in [4, 65536] (uint16 shards)")
    if not 1 <= a.triggers <= a.vocab - 3:
        p.error("--triggers must leave at least 2 ordinary tokens besides BOS")
    if a.doc_len < 3:
        p.error("--doc-len must be at least 3")
    if a.train_docs < 1 or a.val_docs < 1:
        p.error("--train-docs and --val-docs must be positive")
    if a.support < 1 or a.alpha <= 0 or not 0.0 <= a.trigger_mass < 1.0:
        p.error("need --support >= 1, --alpha > 0 and 0 <= --trigger-mass < 1")

    rng = random.Random(a.seed)
    ordinary, triggers, rows = transition_matrix(rng, a.vocab, a.triggers, a.support, a.alpha,
                                                 a.trigger_mass)
    sampler = Sampler(rows)
    trigger_set = set(triggers)
    os.makedirs(a.dir, exist_ok=True)
    report = {}
    for split, n_docs in (("train", a.train_docs), ("val", a.val_docs)):
        split_rng = random.Random(f"{a.seed}:{split}")  # splits independent of each other's size
        stats = {"nll": 0.0, "targets": 0, "copies": 0}
        toks = make_documents(split_rng, n_docs, a.doc_len, ordinary, trigger_set, sampler, rows,
                              stats)
        write_shard(os.path.join(a.dir, f"{split}_000000.bin"), toks)
        report[split] = {
            "documents": n_docs,
            "tokens": len(toks),
            "backcopy_fraction": stats["copies"] / stats["targets"],
            "bayes_loss": stats["nll"] / stats["targets"],
        }
        print(f"{split}: {n_docs} documents x {a.doc_len} = {len(toks)} tokens, "
              f"back-copy targets {100 * report[split]['backcopy_fraction']:.1f}%, "
              f"Bayes-optimal loss {report[split]['bayes_loss']:.4f} nats/token")
    task = {
        "task": "bigram-backcopy",
        "bos": BOS,
        "vocab": a.vocab,
        "ordinary": [ordinary[0], ordinary[-1]],
        "triggers": triggers,
        "doc_len": a.doc_len,
        "block_size": a.doc_len - 1,
        "window_stride": a.doc_len,
        "support": a.support,
        "alpha": a.alpha,
        "trigger_mass": a.trigger_mass,
        "seed": a.seed,
        "splits": report,
        "transitions": {str(k): {str(b): round(q, 6) for b, q in sorted(v.items())}
                        for k, v in rows.items()},
    }
    with open(os.path.join(a.dir, "bb_task.json"), "w") as f:
        json.dump(task, f, indent=1)
        f.write("\n")
    print(f"wrote {a.dir}/train_000000.bin, val_000000.bin, bb_task.json; train with "
          f"model.block_size {a.doc_len - 1}, data.window_stride {a.doc_len}, "
          f"model.vocab_size {a.vocab} (or more), data.tokenizer byte")


if __name__ == "__main__":
    main()
