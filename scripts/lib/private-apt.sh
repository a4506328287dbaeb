# shellcheck shell=bash
# Downloads Debian packages with apt's signature checking into a private directory:
# a private apt state (its own sources.list, lists, cache and an empty status), the mirror
# and keyring of this machine's own apt configuration, `apt-get download`, `dpkg -x`.
# Nothing is installed system-wide. Sourced by scripts/install-*.sh, which define `say`
# and `die` first.
#
#   private_apt_unpack ROOT SUITES PKG/SUITE...
#     SUITES: the suites to read, space-separated ("trixie sid"); unpacks every PKG into
#     ROOT (apt state in ROOT/.apt, made anew).

# Sets `mirror` and `keyring` from this machine's apt configuration (deb822 .sources first,
# then sources.list).
private_apt_mirror() {
  local codename f stanza
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
}

private_apt_unpack() {
  local root=$1 suites=$2 state suite deb
  shift 2
  command -v apt-get >/dev/null || die "needs apt-get (a Debian machine)"
  command -v dpkg >/dev/null || die "needs dpkg"
  private_apt_mirror
  state="$root/.apt"
  rm -rf "$state"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" "$root"
  : > "$state/status"
  for suite in $suites; do
    echo "deb [signed-by=$keyring] $mirror $suite main"
  done > "$state/sources.list"
  local apt_private=(-o "Dir::Etc::SourceList=$state/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
    -o "Dir::State::status=$state/status" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${apt_private[@]}" update -qq || die "could not read the $suites package lists from $mirror"
  (cd "$state/debs" && apt-get "${apt_private[@]}" download -qq "$@") \
    || die "could not download $*"
  for deb in "$state/debs"/*.deb; do dpkg -x "$deb" "$root"; done
}
