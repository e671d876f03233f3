#!/usr/bin/env bash
# tools.sh — checks for and installs the tools chordkv's build and tests need.
#
#   .ci/tools.sh check     fail unless go, gofmt and git are on PATH; report protoc
#   .ci/tools.sh install   install what is missing (protoc, and prometheus with
#                          promtool for the metrics tests, via apt-get)
#   .ci/tools.sh protoc    make protoc available for the proto staleness check:
#                          exit 0 when it is (installing it with apt-get as root),
#                          1 when it is missing and CI=true, 3 when it is missing
#                          on a developer machine (the caller warns and skips)
#
# Go tools (protoc-gen-go, protoc-gen-go-grpc, staticcheck) are not installed
# here: proto/gen.sh and the Makefile run them at pinned versions themselves.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
log() { printf 'tools: %s\n' "$*" >&2; }

# apt_install PKG...: install Debian packages as root, or through sudo when it
# needs no password. Fails when neither works.
apt_install() {
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		if have sudo && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			log "cannot install $* : not root and no password-less sudo"
			return 1
		fi
	fi
	if ! have apt-get; then
		log "cannot install $* : no apt-get on this machine; install it with your package manager"
		return 1
	fi
	log "installing $* with apt-get"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

cmd_check() {
	local missing=()
	for t in go gofmt git; do
		have "$t" || missing+=("$t")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "missing: ${missing[*]} (install Go from https://go.dev/dl/ and git)"
		return 1
	fi
	log "$(go version)"
	if have protoc; then
		log "$(protoc --version)"
	else
		log "protoc not found (needed by proto/gen.sh; 'make tools' installs it)"
	fi
}

cmd_install() {
	local want=()
	have protoc || want+=(protobuf-compiler)
	# prometheus and promtool: a real Prometheus scrapes a ring in the e2e
	# tests, and promtool checks the /metrics output.
	{ have prometheus && have promtool; } || want+=(prometheus)
	if [ ${#want[@]} -gt 0 ]; then
		apt_install "${want[@]}"
	fi
	log "$(protoc --version); $(prometheus --version 2>&1 | head -n1)"
}

cmd_protoc() {
	have protoc && return 0
	if [ "$(id -u)" -eq 0 ] && apt_install protobuf-compiler && have protoc; then
		return 0
	fi
	if [ "${CI:-}" = "true" ]; then
		log "protoc is missing and CI=true: the proto staleness check cannot be skipped in CI"
		return 1
	fi
	return 3
}

case "${1:-}" in
check) cmd_check ;;
install) cmd_install ;;
protoc) cmd_protoc ;;
*)
	echo "usage: $0 check|install|protoc" >&2
	exit 2
	;;
esac
