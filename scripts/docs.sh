#!/usr/bin/env bash
# `make docs`: the book of docs/ into target/book. Writes the generated reference pages from
# the code first (inferpush-docgen; `--check` only checks that they are current, as CI does),
# builds the book with the pinned mdBook, and checks every internal link of the result.
set -euo pipefail
cd "$(dirname "$0")/.."
mdbook=$(scripts/ensure-mdbook.sh)
bin="${CARGO_TARGET_DIR:-target}/debug/inferpush-docgen"
[[ -x "$bin" ]] || cargo build -p inferpush-docgen
"$bin" "$@"
"$mdbook" build docs
python3 scripts/check-book-links.py target/book
echo "the book: target/book/index.html"
