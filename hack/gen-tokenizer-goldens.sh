#!/usr/bin/env bash
# gen-tokenizer-goldens.sh regenerates tokenization/testdata/goldens from the
# real HuggingFace tokenizer (npm tokenizers@0.23.2, the Node binding of the
# Rust crate vLLM uses, sha256-pinned) and, for chat templates, Python Jinja2
# with the transformers environment (Debian python3-jinja2). The oracle is
# installed into the git-ignored testdata/fetched/oracle.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
oracle="$root/testdata/fetched/oracle"
fixtures="$root/testdata/fetched/tokenizers"
out="$root/tokenization/testdata/goldens"
oracle_pkg=tokenizers@0.23.2
oracle_sha=d5196036d6e7ef5934659618ef8f911080bf95f6ba6a2e42c243196a0ea50bc4

bash "$root/hack/fetch-tokenizers.sh"

if [ ! -f "$oracle/node_modules/tokenizers/tokenizers.linux-x64-gnu.node" ]; then
	mkdir -p "$oracle"
	tgz=$(cd "$oracle" && npm pack --silent "$oracle_pkg" 2>/dev/null | tail -n1)
	got=$(sha256sum "$oracle/$tgz" | cut -d' ' -f1)
	if [ "$got" != "$oracle_sha" ]; then
		echo "gen-tokenizer-goldens: $oracle_pkg: sha256 $got, want $oracle_sha" >&2
		exit 1
	fi
	[ -f "$oracle/package.json" ] || echo '{"private":true}' >"$oracle/package.json"
	(cd "$oracle" && npm install --silent --no-audit --no-fund "./$tgz")
fi

mkdir -p "$out"
node "$root/hack/gen-tokenizer-goldens.js" "$oracle" "$fixtures" "$out" "$root/tokenization/testdata/corpus" "$root/tokenization/testdata/synthetic"
/usr/bin/python3 "$root/hack/gen-tokenizer-goldens-chat.py" "$fixtures" "$out/chat.json"
node "$root/hack/gen-tokenizer-goldens-chat.js" "$oracle" "$fixtures" "$out/chat.json"
gzip -9nf "$out"/*.jsonl
echo "gen-tokenizer-goldens: wrote ${out#"$root"/}"
