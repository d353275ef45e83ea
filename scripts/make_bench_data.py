#!/usr/bin/env python3
"""Writes llm.c-format shards of uniformly random tokens for speed benchmarks (stdlib only).

    python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
"""
import argparse
import array
import os
import random


def write_shard(path, tokens):
    header = array.array("i", [0] * 256)  # 256 x int32: magic, version, token count
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.tobytes())
    os.replace(tmp, path)


def random_tokens(rng, vocab, n):
    return array.array("H", (rng.randrange(vocab) for _ in range(n)))  # uint16


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--tokens", type=int, default=4_000_000)
    a = p.parse_args()
    if a.vocab > 65536:
        p.error("--vocab above 65536 needs uint32 shards; this script writes uint16")
    os.makedirs(a.dir, exist_ok=True)
    rng = random.Random(0)
    write_shard(os.path.join(a.dir, "train_000000.bin"), random_tokens(rng, a.vocab, a.tokens))
    write_shard(os.path.join(a.dir, "val_000000.bin"), random_tokens(rng, a.vocab, a.tokens // 10))


if __name__ == "__main__":
    main()
