#!/usr/bin/env bash
# Installs a genuinely old OpenSSH sshd (Debian bullseye's 8.4p1) for the tests' "sshd too old"
# hosts, from Debian's registry only: openssh-server and libssl1.1 from bullseye, downloaded
# with a private apt state (scripts/lib/private-apt.sh) and unpacked into ROOT; nothing is
# installed system-wide. Its other libraries are this machine's (same sonames).
#
# Usage: scripts/install-old-sshd.sh ROOT   -> prints the path of ROOT/bin/sshd, a wrapper
# that runs ROOT/usr/sbin/sshd (by its absolute path, which sshd needs to re-exec itself)
# with ROOT's libraries.
set -euo pipefail
ROOT=$(realpath -m "${1:-.e2e/old-sshd}")
WRAPPER="$ROOT/bin/sshd"
say() { echo "install-old-sshd: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -x "$WRAPPER" ] && [ -f "$ROOT/.complete" ]; then
  echo "$WRAPPER"; exit 0
fi
# shellcheck source=scripts/lib/private-apt.sh
. "$(dirname "$0")/lib/private-apt.sh"

rm -f "$ROOT/.complete"
private_apt_unpack "$ROOT" bullseye openssh-server/bullseye libssl1.1/bullseye

# libssl1.1 unpacks into this architecture's multiarch directory (x86_64-linux-gnu, ...).
libdir=""
for lib in "$ROOT"/usr/lib/*/libssl.so.1.1; do [ -f "$lib" ] && libdir=$(dirname "$lib"); done
[ -n "$libdir" ] || die "libssl1.1 did not unpack libssl.so.1.1"
[ -x "$ROOT/usr/sbin/sshd" ] || die "openssh-server did not unpack usr/sbin/sshd"

mkdir -p "$ROOT/bin"
{
  echo '#!/bin/sh'
  echo "# Debian bullseye's OpenSSH sshd, unpacked privately by scripts/install-old-sshd.sh."
  printf 'LD_LIBRARY_PATH=%q exec %q "$@"\n' "$libdir" "$ROOT/usr/sbin/sshd"
} > "$WRAPPER"
chmod 755 "$WRAPPER"
# sshd 8.4 has no -V: its usage message names the version. A missing library stops the
# loader before that.
version=$("$WRAPPER" -V 2>&1 | grep -o '^OpenSSH_[^ ,]*' || true)
[ -n "$version" ] || die "the unpacked sshd does not run: $("$WRAPPER" -V 2>&1 | head -2)"
touch "$ROOT/.complete"
say "$version ready"
echo "$WRAPPER"
