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

# backports_source adds Debian 12's bookworm-backports suite (where
# valkey-server lives) unless a source already names it.
backports_source() {
	if grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 0
	fi
	echo "install-deps: adding the bookworm-backports source (for valkey-server)"
	$sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'EOS'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
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
	plain=() backports=()
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	for p in "${missing[@]}"; do
		if [ "$p" = valkey-server ] && [ "$codename" = bookworm ]; then
			backports+=("$p")
		else
			plain+=("$p")
		fi
	done
	if ((${#backports[@]})); then
		backports_source
	fi
	$sudo apt-get update -qq
	if ((${#plain[@]})); then
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${plain[@]}" >/dev/null
	fi
	if ((${#backports[@]})); then
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports "${backports[@]}" >/dev/null
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
