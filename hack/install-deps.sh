#!/usr/bin/env bash
# install-deps.sh installs the system packages kvtrack needs, and only those
# that are missing: running it twice is cheap.
#
#   hack/install-deps.sh demo   only what `make demo` needs: the simulation
#                               builds the ZMQ transport and nothing else
#   hack/install-deps.sh        everything the build and the test suite need
#
#   libzmq3-dev, pkg-config   cgo build of github.com/pebbe/zmq4 (ZMQ transport)
#   redis-server              the Redis index's tests start their own server
#   valkey-server             ...and run its conformance suite on Valkey too; on
#                             Debian 12 it comes from bookworm-backports, which
#                             this script adds when missing (backports are
#                             pinned low by apt: nothing else is upgraded)
#   python3-zmq, -msgpack     the independent Python vLLM-protocol publisher in tests
#   python3-jinja2            chat-template golden generation (hack/)
#   nodejs, npm               tokenizer fixtures and the HF tokenizer oracle (npm)
set -euo pipefail

set_name=${1:-all}
case "$set_name" in
demo) pkgs=(libzmq3-dev pkg-config) ;;
all) pkgs=(libzmq3-dev pkg-config redis-server valkey-server python3-zmq python3-msgpack python3-jinja2 nodejs npm) ;;
*)
	echo "usage: $0 [demo|all]" >&2
	exit 2
	;;
esac

missing=()
for p in "${pkgs[@]}"; do
	# npm and node may come from outside Debian (nvm, a tarball): accept them.
	case "$p" in
	nodejs) command -v node >/dev/null 2>&1 && continue ;;
	npm) command -v npm >/dev/null 2>&1 && continue ;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

# valkey_from prints where apt would install valkey-server from: "-t
# bookworm-backports" when only that suite has it, nothing when a regular
# suite does, and fails when no configured source has it. Asking apt (after
# an update) rather than reading the source files sees through a disabled
# stanza (Enabled: no), a .save copy, or a mirror under another name.
valkey_from() {
	local m
	m=$(apt-cache madison valkey-server 2>/dev/null) || return 1
	[ -n "$m" ] || return 1
	if grep -v -q bookworm-backports <<<"$m"; then
		return 0
	fi
	echo "-t bookworm-backports"
}

# add_backports adds Debian 12's bookworm-backports suite (where
# valkey-server lives) in a file of its own.
add_backports() {
	echo "install-deps: adding the bookworm-backports source (for valkey-server)"
	$sudo tee /etc/apt/sources.list.d/kvtrack-bookworm-backports.sources >/dev/null <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
	$sudo apt-get update -qq
}

if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
			exit 1
		}
		sudo=sudo
	fi
	plain=() valkey=0
	for p in "${missing[@]}"; do
		if [ "$p" = valkey-server ]; then
			valkey=1
		else
			plain+=("$p")
		fi
	done
	$sudo apt-get update -qq
	if ((${#plain[@]})); then
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${plain[@]}" >/dev/null
	fi
	if ((valkey)); then
		codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
		if ! from=$(valkey_from) && [ "$codename" = bookworm ]; then
			add_backports
			from=$(valkey_from) || true
		fi
		if from=$(valkey_from); then
			# $from is empty or "-t bookworm-backports": split on purpose.
			# shellcheck disable=SC2086
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $from valkey-server >/dev/null
		else
			# Everything else is installed: only the Valkey subtests need it.
			echo "install-deps: no apt source here has valkey-server; install it another way," >&2
			echo "install-deps: or run the tests with KVTRACK_SKIP_VALKEY=1 to leave Valkey out" >&2
		fi
	fi
else
	echo "install-deps: system packages present ($set_name)"
fi

# The demo needs no fetched fixtures; the test suite does (see hack/README.md).
[ "$set_name" = demo ] && exit 0
here=$(cd "$(dirname "$0")" && pwd)
for f in "$here"/fetch-*.sh; do
	[ -e "$f" ] || continue
	bash "$f"
done
