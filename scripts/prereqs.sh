#!/usr/bin/env bash
# Installs the OS prerequisites Notice needs on Debian 12, and does nothing for what is present.
#   scripts/prereqs.sh            runtime: libstdc++ >= GCC 13 (TorchSharp 0.107), redis-server, fonts for figures
#   scripts/prereqs.sh --tests    also chromium (browser tests)
set -euo pipefail

want_tests=0
[[ "${1:-}" == "--tests" ]] && want_tests=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

apt_updated=0
apt_update_once() {
  if [[ $apt_updated -eq 0 ]]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
}

say() { echo "[prereqs] $*" >&2; }

# TorchSharp 0.107's native library (libtorch 2.10) needs GLIBCXX_3.4.32 (GCC 13+). Debian 12
# ships GCC 12's libstdc++, so take libstdc++6 from Debian 13 (trixie) at a low pin priority,
# reusing the URI of this machine's own Debian source (never a hard-coded mirror host).
libstdcxx_ok() {
  local lib
  for lib in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6; do
    [[ -e $lib ]] && grep -qa 'GLIBCXX_3.4.32' "$lib" && return 0
  done
  return 1
}

debian_uri() {
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "$uri"
}

if ! libstdcxx_ok; then
  say "libstdc++ lacks GLIBCXX_3.4.32: installing libstdc++6 from Debian 13 (trixie)"
  uri=$(debian_uri)
  if [[ -z $uri ]]; then
    say "error: could not find this machine's Debian apt source URI"; exit 1
  fi
  $SUDO tee /etc/apt/sources.list.d/notice-trixie.list >/dev/null <<SRC
deb $uri trixie main
SRC
  $SUDO tee /etc/apt/preferences.d/notice-trixie >/dev/null <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  apt_updated=0
  apt_update_once
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie libstdc++6 >/dev/null
  libstdcxx_ok || { say "error: libstdc++6 from trixie still lacks GLIBCXX_3.4.32"; exit 1; }
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
# Text in the figures of `notice analyze` (ScottPlot draws with the system's fonts).
[[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
if [[ $want_tests -eq 1 ]]; then
  command -v chromium >/dev/null || need+=(chromium)
fi
if [[ ${#need[@]} -gt 0 ]]; then
  say "installing ${need[*]}"
  apt_update_once
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The distribution's redis service is not used: Notice starts its own servers on free ports.
  if command -v systemctl >/dev/null && [[ " ${need[*]} " == *" redis-server "* ]]; then
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
fi

command -v dotnet >/dev/null || { say "error: the .NET 10 SDK (dotnet) is not on PATH"; exit 1; }
exit 0
