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
# shellcheck source=scripts/lib/private-apt.sh
. "$(dirname "$0")/lib/private-apt.sh"

export DEBIAN_FRONTEND=noninteractive
if ! command -v ruby >/dev/null || ! ruby -e 'require "ed25519"; require "bcrypt_pbkdf"' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || die "needs root to install ruby ruby-ed25519 ruby-bcrypt-pbkdf (or install them first)"
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends ruby ruby-ed25519 ruby-bcrypt-pbkdf >/dev/null \
    || die "could not install ruby from this machine's suite"
fi

trixie=(ruby-activesupport ruby-i18n ruby-tzinfo ruby-concurrent ruby-zeitwerk ruby-net-ssh
  ruby-net-scp ruby-net-sftp ruby-thor ruby-base64 ruby-connection-pool)
sid=(ruby-kamal ruby-sshkit ruby-dotenv)
pkgs=()
for p in "${trixie[@]}"; do pkgs+=("$p/trixie"); done
for p in "${sid[@]}"; do pkgs+=("$p/sid"); done
private_apt_unpack "$ROOT" "trixie sid" "${pkgs[@]}"

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
