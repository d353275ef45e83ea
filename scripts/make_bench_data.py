#!/usr/bin/env python3
"""Writes llm.c-format shards of uniformly random tokens for speed benchmarks.

    python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
"""
import argparse
import os

import numpy as np


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.uint16).tobytes())
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--tokens", type=int, default=4_000_000)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(0)
    write_shard(os.path.join(a.dir, "train_000000.bin"), rng.integers(0, a.vocab, a.tokens))
    write_shard(os.path.join(a.dir, "val_000000.bin"), rng.integers(0, a.vocab, a.tokens // 10))


if __name__ == "__main__":
    main()
