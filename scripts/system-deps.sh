#!/usr/bin/env bash
# Installs what the test suite needs from Debian (OpenSSH server and client, ShellCheck, sudo,
# procps, Ruby) when running as root with apt; otherwise says exactly what is missing.
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v sudo >/dev/null 2>&1 || need+=(sudo)  # the host checks' `sudo -n sshd -T` path
command -v ps >/dev/null 2>&1 || need+=(procps)  # our Kamal hooks find the running Kamal with ps
command -v ruby >/dev/null 2>&1 || need+=(ruby)  # the Ruby guard's tests (tests/test_guard.py)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
echo "system-deps: missing ${need[*]}; install them (apt-get install ${need[*]})." >&2
if [ "${CI:-}" = true ]; then
  echo "system-deps: CI needs them: failing" >&2
  exit 1
fi
echo "system-deps: tests that need them will fail until they are installed." >&2
