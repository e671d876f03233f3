#!/usr/bin/env bash
# Generates the Go code for proto/chordkv/v1 with pinned plugins.
#
#   proto/gen.sh           regenerate and overwrite the committed files
#   proto/gen.sh --check   regenerate into a temp dir and fail if the
#                          committed files differ (CI's proto-check)
#
# The plugins are installed into bin/tools at the pinned versions when missing,
# so the output depends only on these pins and on protoc itself.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/bin/tools"
cd "$root"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: proto/gen.sh [--check]" >&2; exit 2 ;;
esac

command -v protoc >/dev/null || { echo "proto/gen.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

# install_tool NAME PACKAGE VERSION: (re)install when missing or at another version.
install_tool() {
  local name=$1 pkg=$2 version=$3 stamp="$tools/.$1.version"
  if [[ -x "$tools/$name" && "$(cat "$stamp" 2>/dev/null)" == "$version" ]]; then
    return
  fi
  mkdir -p "$tools"
  GOBIN="$tools" GOFLAGS=-mod=mod go install "$pkg@$version"
  echo "$version" >"$stamp"
}
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

out="$root"
if $check; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

mapfile -t protos < <(find proto -name '*.proto' | sort)
PATH="$tools:$PATH" protoc \
  --proto_path=proto \
  --go_out="$out" --go_opt=module=github.com/chordkv/chordkv \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/chordkv/chordkv \
  "${protos[@]}"

if $check; then
  status=0
  while IFS= read -r f; do
    rel="${f#"$out"/}"
    if ! diff -u "$root/$rel" "$f"; then
      status=1
    fi
  done < <(find "$out" -name '*.go' | sort)
  # A committed generated file with no .proto behind it is stale too.
  while IFS= read -r f; do
    [[ -e "$out/$f" ]] || { echo "proto/gen.sh: $f has no source .proto" >&2; status=1; }
  done < <(find proto -name '*.pb.go' | sort)
  if [[ $status -ne 0 ]]; then
    echo "proto/gen.sh: generated code is out of date; run proto/gen.sh" >&2
  fi
  exit $status
fi
