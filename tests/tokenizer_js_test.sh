#!/usr/bin/env bash
# ctest `tokenizer_js`: sinklab's tokenizers against independent JavaScript implementations.
#   (a) `gpt2` gives js-tiktoken's ids (OpenAI's tiktoken, ported) on every shipped corpus and on
#       tests/data/tokenizer_text.txt (contractions, whitespace, scripts, emoji)
#   (b) the tokenizer.json sinklab writes for byte, a trained bpe and gpt2, loaded by
#       @huggingface/tokenizers (Hugging Face's loader, ported), gives sinklab's ids and decodes
#       them back to the text (Moby-Dick and tokenizer_text.txt)
# The npm packages are pinned in tests/js/package-lock.json and installed with `npm ci` into
# <build>/tokenizer_js/ on the first run (network needed once). The corpora and GPT-2's vocabulary
# come from scripts/get_data.sh (data/raw/ or ../shared/data, data/gpt2/).
# Exit 77 (skipped) when node or npm, the packages, the vocabulary or the corpora are missing;
# on CI (CI=true) that is a failure instead.
#   bash tests/tokenizer_js_test.sh build
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?usage: tokenizer_js_test.sh <build_dir>}" && pwd)
sinklab="$build/sinklab"
[ -x "$sinklab" ] || { echo "tokenizer_js: no $sinklab (build first)" >&2; exit 1; }
fail() { echo "tokenizer_js: FAIL: $*" >&2; exit 1; }
skip() {
  if [ "${CI:-}" = true ]; then fail "on CI: $*"; fi
  echo "tokenizer_js: skipped: $*"
  exit 77
}

command -v node >/dev/null 2>&1 || skip "no node (scripts/deps.sh installs nodejs)"
js="$build/tokenizer_js"
if ! cmp -s tests/js/package-lock.json "$js/package-lock.json" || [ ! -d "$js/node_modules" ]; then
  command -v npm >/dev/null 2>&1 || skip "no npm to install tests/js/package.json's packages"
  rm -rf "$js" && mkdir -p "$js"
  cp tests/js/package.json tests/js/package-lock.json "$js/"
  (cd "$js" && npm ci --no-audit --no-fund --fetch-retries=1 --fetch-timeout=30000 >npm.log 2>&1) ||
    { rm -f "$js/package-lock.json"; skip "npm ci failed (registry unreachable?): $(tail -3 "$js/npm.log")"; }
fi
cp tests/js/check_tokenizers.mjs "$js/"
check() { node "$js/check_tokenizers.mjs" "$@"; }

corpora=""
for dir in "${SINKLAB_RAW_DIR:-data/raw}" ../shared/data; do
  if [ -s "$dir/moby_dick.txt" ] && [ -s "$dir/sotu.txt" ]; then corpora=$dir; break; fi
done
[ -n "$corpora" ] || skip "no corpora in data/raw or ../shared/data (bash scripts/get_data.sh)"
if ! probe=$("$sinklab" tokenize --tokenizer gpt2 --text "x" 2>&1); then
  grep -q "without PCRE2" <<<"$probe" && skip "this sinklab was built without PCRE2 (libpcre2-dev)"
  skip "GPT-2's vocabulary is not installed (bash scripts/get_data.sh --only gpt2): $probe"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
text=tests/data/tokenizer_text.txt
# ids NAME SPEC FILE: sinklab's ids of FILE into $tmp/NAME.bin
ids() { "$sinklab" tokenize --tokenizer "$2" --file "$3" --out "$tmp/$1.bin" >/dev/null; }

# (a) GPT-2 against js-tiktoken, every shipped corpus.
pairs=()
for f in "$corpora/moby_dick.txt" "$corpora/sotu.txt" "$text"; do  # the shipped corpora, not data/raw's larger ones
  name=gpt2_$(basename "$f" .txt)
  ids "$name" gpt2 "$f"
  pairs+=("$f" "$tmp/$name.bin")
done
check tiktoken "${pairs[@]}" || fail "gpt2 ids differ from js-tiktoken's"

# (b) tokenizer.json files, loaded by Hugging Face's JavaScript tokenizers.
"$sinklab" prepare configs/quickstart.yaml --set data.dir="$tmp/bpe" \
  --set "prepare.inputs=[$corpora/moby_dick.txt]" --set prepare.vocab_size=4096 >/dev/null
for spec in byte "$tmp/bpe/tokenizer.json" gpt2; do
  case $spec in byte | gpt2) name=$spec ;; *) name=bpe ;; esac
  "$sinklab" tokenize --tokenizer "$spec" --write-hf "$tmp/hf_$name" >/dev/null
  pairs=()
  for f in "$corpora/moby_dick.txt" "$text"; do
    ids "${name}_$(basename "$f" .txt)" "$spec" "$f"
    pairs+=("$f" "$tmp/${name}_$(basename "$f" .txt).bin")
  done
  check hf "$tmp/hf_$name" "${pairs[@]}" || fail "$spec: @huggingface/tokenizers differs"
done

# The checker itself must catch a difference: the bpe's ids against the gpt2 file.
if check tiktoken "$text" "$tmp/bpe_tokenizer_text.bin" >/dev/null; then
  fail "check_tokenizers.mjs accepted a bpe's ids as GPT-2's"
fi
echo "tokenizer_js: passed"
