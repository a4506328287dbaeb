#!/usr/bin/env bash
# Installs the real Kamal for the end-to-end tier, from Debian's registry only.
#
# Ruby and the native gems (ruby-ed25519, ruby-bcrypt-pbkdf) come from this
# machine's own suite. Kamal and its newer pure-Ruby dependencies come from
# Debian's newer suites, downloaded with a private apt state and unpacked into
# a private directory: nothing from the newer suites is installed system-wide.
# The mirror is read from this machine's apt configuration.
#
# Usage: scripts/install-kamal.sh ROOT   -> prints the path of ROOT/bin/kamal
set -euo pipefail
ROOT=$(realpath -m "${1:-.e2e/kamal}")
WRAPPER="$ROOT/bin/kamal"
say() { echo "install-kamal: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -x "$WRAPPER" ] && [ -f "$ROOT/.complete" ] && command -v ruby >/dev/null; then
  echo "$WRAPPER"; exit 0
fi
command -v apt-get >/dev/null || die "needs apt-get (a Debian machine)"
command -v dpkg >/dev/null || die "needs dpkg"

export DEBIAN_FRONTEND=noninteractive
if ! command -v ruby >/dev/null || ! ruby -e 'require "ed25519"; require "bcrypt_pbkdf"' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || die "needs root to install ruby ruby-ed25519 ruby-bcrypt-pbkdf (or install them first)"
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends ruby ruby-ed25519 ruby-bcrypt-pbkdf >/dev/null \
    || die "could not install ruby from this machine's suite"
fi

# The machine's own Debian mirror and keyring (deb822 .sources first, then sources.list).
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror="" keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  stanza=$(awk -v RS= -v c="$codename" '$0 ~ "Suites:[^\n]*(^|[ \t])" c "([ \t]|$)" {print; exit}' "$f")
  [ -n "$stanza" ] || continue
  mirror=$(printf '%s\n' "$stanza" | awk '/^URIs:/ {print $2; exit}')
  keyring=$(printf '%s\n' "$stanza" | awk '/^Signed-By:/ {print $2; exit}')
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk -v c="$codename" '$1 == "deb" && $0 ~ c {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || die "no Debian mirror for '$codename' found in this machine's apt configuration"
keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
[ -f "$keyring" ] || die "keyring $keyring not found"
say "mirror $mirror (from this machine's apt configuration)"

state="$ROOT/.apt"
rm -rf "$state"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" "$ROOT"
: > "$state/status"
{
  echo "deb [signed-by=$keyring] $mirror trixie main"
  echo "deb [signed-by=$keyring] $mirror sid main"
} > "$state/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
  -o "Dir::State::status=$state/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${apt_private[@]}" update -qq || die "could not read the trixie/sid package lists from $mirror"

trixie=(ruby-activesupport ruby-i18n ruby-tzinfo ruby-concurrent ruby-zeitwerk ruby-net-ssh
  ruby-net-scp ruby-net-sftp ruby-thor ruby-base64 ruby-connection-pool)
sid=(ruby-kamal ruby-sshkit ruby-dotenv)
pkgs=()
for p in "${trixie[@]}"; do pkgs+=("$p/trixie"); done
for p in "${sid[@]}"; do pkgs+=("$p/sid"); done
(cd "$state/debs" && apt-get "${apt_private[@]}" download -qq "${pkgs[@]}") \
  || die "could not download ${pkgs[*]}"
for deb in "$state/debs"/*.deb; do dpkg -x "$deb" "$ROOT"; done

gems="$ROOT/usr/share/rubygems-integration/all/gems"
kamal_dir=$(ls -d "$gems"/kamal-* 2>/dev/null | head -1)
[ -n "$kamal_dir" ] || die "ruby-kamal did not unpack a kamal gem"
rubylib="$kamal_dir/lib"
for g in "$gems"/*/; do
  g=${g%/}
  case "$g" in "$kamal_dir") continue ;; esac
  if [ -d "$g/lib/concurrent-ruby" ]; then rubylib="$rubylib:$g/lib/concurrent-ruby"; else rubylib="$rubylib:$g/lib"; fi
done
[ -d "$ROOT/usr/lib/ruby/vendor_ruby" ] && rubylib="$rubylib:$ROOT/usr/lib/ruby/vendor_ruby"

mkdir -p "$ROOT/bin"
cat > "$WRAPPER" <<WRAP
#!/bin/sh
# The real Kamal, unpacked privately by scripts/install-kamal.sh.
RUBYLIB="$rubylib\${RUBYLIB:+:\$RUBYLIB}" exec ruby "$kamal_dir/bin/kamal" "\$@"
WRAP
chmod +x "$WRAPPER"
"$WRAPPER" version >/dev/null 2>&1 || die "the unpacked kamal does not run: $("$WRAPPER" version 2>&1 | tail -1)"
touch "$ROOT/.complete"
say "kamal $("$WRAPPER" version) ready"
echo "$WRAPPER"
