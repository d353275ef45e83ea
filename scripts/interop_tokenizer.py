#!/usr/bin/env python3
"""sinklab's tokenizers against the Python reference implementations (the GPU machine has them;
it has no network and installs nothing, so everything it needs travels with the work tree).

  python3 scripts/interop_tokenizer.py [--build build] [--corpora DIR] [--gpt2 DIR]

Proves, on every shipped corpus (moby_dick.txt, sotu.txt) and on tests/data/tokenizer_text.txt:
  1. `sinklab tokenize --tokenizer gpt2` == tiktoken.get_encoding("gpt2").encode_ordinary(text).
     tiktoken's gpt2 files are not downloaded: a private TIKTOKEN_CACHE_DIR is filled with
     data/gpt2/ (scripts/get_data.sh), which tiktoken accepts only if their SHA-256 sums are the
     ones it expects for OpenAI's files.
  2. The tokenizer.json that sinklab writes (`sinklab tokenize --write-hf DIR`) for byte, bpe
     (trained by `sinklab prepare` at vocab 512 and 32768) and gpt2, loaded with
     tokenizers.Tokenizer.from_file, gives sinklab's ids (no special tokens added, special-token
     text encoded as text) and decodes them back to the text; and
     transformers.AutoTokenizer.from_pretrained(DIR) gives the same ids and text (Moby-Dick and
     tokenizer_text.txt; the State of the Union through tokenizers only).
Exit status 0 when everything is equal, 1 at any difference, 77 when a dependency is missing
(python package, built sinklab, vocabulary or corpora).

What to carry to the GPU machine with `run` (gitignored paths): data/gpt2 (1.5 MB, GPT-2's files)
and data/raw (12 MB, the corpora), both written by `bash scripts/get_data.sh`. sinklab itself is
built there (CPU only is enough): cmake -S . -B build-cpu -G Ninja -DSINKLAB_CUDA=OFF &&
cmake --build build-cpu -j 16 --target sinklab.
"""
import argparse
import array
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(ROOT, "tests", "data", "tokenizer_text.txt")
# tiktoken_ext/openai_public.py: the gpt2 files' addresses (the cache is keyed by their SHA-1).
TIKTOKEN_GPT2 = {
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


def skip(why):
    print(f"interop_tokenizer: skipped: {why}")
    sys.exit(77)


def read_shard(path):
    """Token ids of an llm.c shard (256 x int32 header; version 1 uint16, 2 uint32)."""
    with open(path, "rb") as f:
        data = f.read()
    header = array.array("i")
    header.frombytes(data[:1024])
    if sys.byteorder != "little":
        header.byteswap()
    assert header[0] == 20240520, f"{path}: not an llm.c shard"
    ids = array.array("H" if header[1] == 1 else "I")
    ids.frombytes(data[1024:])
    if sys.byteorder != "little":
        ids.byteswap()
    assert len(ids) == header[2], f"{path}: {len(ids)} tokens, header says {header[2]}"
    return ids.tolist()


def first_difference(expected, actual):
    for i, (a, b) in enumerate(zip(expected, actual)):
        if a != b:
            return i
    return None if len(expected) == len(actual) else min(len(expected), len(actual))


class Checker:
    def __init__(self, sinklab, work):
        self.sinklab, self.work, self.failures, self.checks = sinklab, work, 0, 0

    def sinklab_ids(self, spec, path):
        out = os.path.join(self.work, hashlib.sha1(f"{spec}|{path}".encode()).hexdigest() + ".bin")
        if not os.path.exists(out):
            subprocess.run([self.sinklab, "tokenize", "--tokenizer", spec, "--file", path,
                            "--out", out], check=True, stdout=subprocess.DEVNULL)
        return read_shard(out)

    def compare(self, what, expected, actual):
        self.checks += 1
        i = first_difference(expected, actual)
        if i is None:
            print(f"ok   {what}: {len(expected)} tokens equal")
            return True
        self.failures += 1
        print(f"FAIL {what}: first difference at token {i} ({len(expected)} expected, "
              f"{len(actual)} from sinklab)\n  expected {expected[max(0, i - 5):i + 8]}\n"
              f"  sinklab  {actual[max(0, i - 5):i + 8]}")
        return False

    def same_text(self, what, decoded, text):
        self.checks += 1
        if decoded == text:
            return
        self.failures += 1
        decoded = decoded if isinstance(decoded, str) else repr(decoded)
        i = first_difference(decoded, text) or 0
        print(f"FAIL {what}: decoding does not give the text back (first difference at "
              f"character {i}: {decoded[max(0, i - 20):i + 20]!r} vs {text[max(0, i - 20):i + 20]!r})")


def read_text(path):
    with open(path, "rb") as f:  # bytes as they are: no newline translation
        return f.read().decode("utf-8")


def tiktoken_gpt2(gpt2_dir, work):
    """tiktoken's own gpt2 encoding (its pattern, its ranks code) from the files in data/gpt2.

    First through tiktoken's cache, which is keyed by the SHA-1 of each file's address and
    checks the SHA-256 it expects; if this tiktoken looks elsewhere, by answering its file reads
    for those addresses from data/gpt2 (get_data.sh has checked the same SHA-256 sums)."""
    import tiktoken
    import tiktoken.load
    cache = os.path.join(work, "tiktoken_cache")
    os.makedirs(cache, exist_ok=True)
    for name, url in TIKTOKEN_GPT2.items():
        shutil.copyfile(os.path.join(gpt2_dir, name),
                        os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))
    os.environ["TIKTOKEN_CACHE_DIR"] = cache
    try:
        return tiktoken.get_encoding("gpt2"), "through its cache"
    except Exception as e:  # noqa: BLE001 (any failure: try the other way)
        print(f"tiktoken's cache did not serve gpt2 ({e}); answering its reads from {gpt2_dir}")
    local = {url: os.path.join(gpt2_dir, name) for name, url in TIKTOKEN_GPT2.items()}
    read_file = tiktoken.load.read_file

    def read_local(blobpath):
        if blobpath in local:
            with open(local[blobpath], "rb") as f:
                return f.read()
        return read_file(blobpath)

    tiktoken.load.read_file = read_local
    os.environ["TIKTOKEN_CACHE_DIR"] = os.path.join(work, "tiktoken_cache_2")
    return tiktoken.get_encoding("gpt2"), "its file reads answered from data/gpt2"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"),
                        help="build folder holding sinklab (default build/)")
    parser.add_argument("--corpora", help="folder with moby_dick.txt and sotu.txt "
                        "(default data/raw, else ../shared/data)")
    parser.add_argument("--gpt2", default=os.path.join(ROOT, "data", "gpt2"),
                        help="folder with GPT-2's encoder.json and vocab.bpe (default data/gpt2)")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: never wait for a network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import tiktoken
        import tokenizers
        import transformers
    except ImportError as e:
        skip(f"{e} (this script is for a machine with tiktoken, tokenizers and transformers)")
    sinklab = os.path.join(args.build, "sinklab")
    if not os.access(sinklab, os.X_OK):
        skip(f"no {sinklab}: build it first (cmake --build {args.build} --target sinklab)")
    if not all(os.path.isfile(os.path.join(args.gpt2, f)) for f in TIKTOKEN_GPT2):
        skip(f"no encoder.json and vocab.bpe in {args.gpt2} (bash scripts/get_data.sh, and carry "
             f"data/gpt2 to this machine)")
    corpora = [args.corpora] if args.corpora else [os.path.join(ROOT, "data", "raw"),
                                                   os.path.join(os.path.dirname(ROOT), "shared", "data")]
    corpus_dir = next((d for d in corpora if os.path.isfile(os.path.join(d, "moby_dick.txt"))
                       and os.path.isfile(os.path.join(d, "sotu.txt"))), None)
    if corpus_dir is None:
        skip(f"no moby_dick.txt and sotu.txt in {' or '.join(corpora)} (bash scripts/get_data.sh, "
             f"and carry data/raw)")
    print(f"tiktoken {tiktoken.__version__}, tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}; corpora in {corpus_dir}")
    os.environ["SINKLAB_GPT2_DIR"] = os.path.abspath(args.gpt2)
    moby, sotu = (os.path.join(corpus_dir, f) for f in ("moby_dick.txt", "sotu.txt"))
    files = [moby, sotu, TEXT]
    texts = {f: read_text(f) for f in files}

    with tempfile.TemporaryDirectory() as work:
        check = Checker(sinklab, work)
        # 1. gpt2 == tiktoken
        enc, how = tiktoken_gpt2(args.gpt2, work)
        print(f"tiktoken gpt2 ({how}): pattern {enc._pat_str!r}, {enc.n_vocab} tokens")
        for f in files:
            t0 = time.time()
            expected = enc.encode_ordinary(texts[f])
            check.compare(f"tiktoken gpt2 on {os.path.basename(f)} ({time.time() - t0:.1f} s)",
                          expected, check.sinklab_ids("gpt2", f))
        # The comparison can fail: the byte tokenizer's ids are not GPT-2's.
        if first_difference(enc.encode_ordinary(texts[TEXT]), check.sinklab_ids("byte", TEXT)) is None:
            check.failures += 1
            print("FAIL the comparison accepted the byte tokenizer's ids as GPT-2's")

        # 2. written tokenizer.json files == sinklab
        specs = {"byte": "byte", "gpt2": "gpt2"}
        for vocab, inputs in ((512, [moby]), (32768, [moby, sotu])):
            data = os.path.join(work, f"bpe{vocab}")
            subprocess.run([sinklab, "prepare", os.path.join(ROOT, "configs", "quickstart.yaml"),
                            "--set", f"data.dir={data}", "--set", f"prepare.inputs=[{','.join(inputs)}]",
                            "--set", f"prepare.vocab_size={vocab}"], check=True,
                           stdout=subprocess.DEVNULL)
            specs[f"bpe{vocab}"] = os.path.join(data, "tokenizer.json")
        for name, spec in specs.items():
            hf_dir = os.path.join(work, "hf_" + name)
            subprocess.run([sinklab, "tokenize", "--tokenizer", spec, "--write-hf", hf_dir],
                           check=True, stdout=subprocess.DEVNULL)
            tok = tokenizers.Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
            if hasattr(tok, "encode_special_tokens"):
                tok.encode_special_tokens = True  # special-token text is text, as in sinklab
            auto = transformers.AutoTokenizer.from_pretrained(hf_dir)
            for f in files:
                ids = check.sinklab_ids(spec, f)
                label = f"{name} tokenizer.json on {os.path.basename(f)}"
                if check.compare(f"tokenizers {label}", tok.encode(texts[f], add_special_tokens=False).ids, ids):
                    check.same_text(f"tokenizers {label}", tok.decode(ids, skip_special_tokens=False), texts[f])
                if f == sotu:
                    continue  # AutoTokenizer on 10 MB at once: slow, and tokenizers has shown it
                if check.compare(f"AutoTokenizer {label}", auto(texts[f], add_special_tokens=False)["input_ids"], ids):
                    check.same_text(f"AutoTokenizer {label}", auto.decode(ids, skip_special_tokens=False), texts[f])

    print(f"{check.checks - check.failures} passed, {check.failures} failed")
    sys.exit(1 if check.failures else 0)


if __name__ == "__main__":
    main()
