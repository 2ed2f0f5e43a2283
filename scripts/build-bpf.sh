#!/bin/sh
# Builds kleak's BPF programs: bpf/kleak.bpf.o (the kernel backend) and bpf/census.bpf.o (the census), each from its .bpf.c, with Debian's clang,
# llvm-strip and libbpf-dev headers. The object is committed (as bpf2go projects commit theirs) so that installing
# kleak needs no compiler. `--check` rebuilds into a temporary file and fails if it differs from the committed
# object: CI runs that, so the object in the repository is always the one its source makes.
set -eu
cd "$(dirname "$0")/.."
for tool in clang llvm-strip; do
  command -v "$tool" >/dev/null || { echo "build-bpf: $tool is not installed (apt-get install clang llvm libbpf-dev)" >&2; exit 2; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build-bpf: libbpf's headers are missing (apt-get install libbpf-dev)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Relative paths only: the object's BTF line info names the source file, and must not name this checkout.
status=0
for name in kleak census; do
  clang -O2 -g -target bpf -Wall -Werror -fdebug-prefix-map="$PWD"=. -Ibpf -I"/usr/include/$(uname -m)-linux-gnu" -c "bpf/$name.bpf.c" -o "$tmp/full.o"
  # DWARF goes (it holds the build directory); BTF, which CO-RE needs, stays.
  llvm-strip -g "$tmp/full.o" -o "$tmp/$name.bpf.o"
  if [ "${1:-}" = --check ]; then
    if cmp -s "$tmp/$name.bpf.o" "bpf/$name.bpf.o"; then
      echo "build-bpf: bpf/$name.bpf.o is what bpf/$name.bpf.c builds to ($(clang --version | head -1))"
    else
      echo "build-bpf: bpf/$name.bpf.o differs from what bpf/$name.bpf.c builds to: run npm run build:bpf and commit the object" >&2
      status=1
    fi
  else
    cp "$tmp/$name.bpf.o" "bpf/$name.bpf.o"
    echo "build-bpf: wrote bpf/$name.bpf.o ($(wc -c < "bpf/$name.bpf.o") bytes)"
  fi
done
exit $status
