#!/usr/bin/env bash
# Builds a plugin project in release mode and packages it for `POST /plugins/{type}`:
# a zip with `Name@vX.Y.Z.so` (plus `name.json` and `name.yaml` when the project has them) at
# its root.
#
#   scripts/package-plugin.sh tests/plugins/sink_memo
#
# The plugin name is `[package.metadata.quiver] name` in the project's Cargo.toml, or else
# the `name: "..."` of its export_plugin! call; the version is the package version (export
# the plugin with `version: env!("CARGO_PKG_VERSION")` so the two agree). The zip is
# `target/plugin-packages/<name>.zip`, or `<package>.zip` with `[package.metadata.quiver]
# package = "mysqlSink"` (eKuiper's zip names). The last line printed is the zip's path
# relative to the repository root. Concurrent runs are safe: the zip is renamed into place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ne 1 ] || [ ! -f "$1/Cargo.toml" ]; then
  echo "usage: $0 <plugin-project-dir>" >&2
  exit 2
fi
project="$(cd "$1" && pwd)"
manifest="$project/Cargo.toml"
# Plugins build in their own target dir (their dependency versions differ from the server's).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/plugins}"

# `path+file:///dir#crate@1.0.0` (or `...#1.0.0` when the crate is named like its folder).
pkgid="$(cargo pkgid --manifest-path "$manifest")"
version="${pkgid##*[#@]}"
crate="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)"
name="$(sed -n '/^\[package.metadata.quiver\]/,/^\[/s/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)"
if [ -z "$name" ]; then
  name="$(grep -A4 'export_plugin!' "$project"/src/*.rs | sed -n 's/.*name: *"\([a-z0-9_]*\)".*/\1/p' | head -1)"
fi
zipname="$(sed -n '/^\[package.metadata.quiver\]/,/^\[/s/^package *= *"\(.*\)"/\1/p' "$manifest" | head -1)"
if [ -z "$name" ]; then
  echo "cannot tell the plugin name: set [package.metadata.quiver] name in $manifest" >&2
  exit 1
fi

echo "building $crate $version (plugin \"$name\") in release mode" >&2
cargo build --release --manifest-path "$manifest" >&2
lib="$CARGO_TARGET_DIR/release/lib${crate//-/_}.so"
[ -f "$lib" ] || { echo "no library at $lib; is the crate a cdylib?" >&2; exit 1; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
so="$(printf '%s' "${name:0:1}" | tr '[:lower:]' '[:upper:]')${name:1}@v$version.so"
cp "$lib" "$stage/$so"
for extra in "$name.json" "$name.yaml"; do
  if [ -f "$project/$extra" ]; then cp "$project/$extra" "$stage/"; fi
done
mkdir -p "$root/target/plugin-packages"
zip="$root/target/plugin-packages/${zipname:-$name}.zip"
partial="$(mktemp "$zip.XXXXXX")"
rm -f "$partial"
if command -v zip >/dev/null 2>&1; then
  (cd "$stage" && zip -q -X "$partial" ./*)
else
  python3 - "$partial" "$stage" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for f in sorted(os.listdir(sys.argv[2])):
        z.write(os.path.join(sys.argv[2], f), f)
PY
fi
mv -f "$partial" "$zip"
echo "packaged $so into:" >&2
echo "${zip#"$root"/}"
