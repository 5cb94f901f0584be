#!/usr/bin/env bash
# Install the system packages the tests need (Xvfb and the xcb libraries Qt 6 loads for the viewer;
# Orthanc with its DICOMweb plugin, which the PACS tests start on loopback), with apt-get, only when missing. Needs root or sudo; otherwise says what to install.
set -euo pipefail
pkgs=(xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1
      libxkbcommon-x11-0 libxcb-cursor0 libxcb-shape0 libgl1 libegl1 libfontconfig1 libdbus-1-3
      orthanc orthanc-dicomweb)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: no apt-get; install these yourself: ${missing[*]}" >&2; exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
# A policy-rc.d that denies keeps the packages from starting Orthanc as a system service (the tests
# start their own); one we add is removed again.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && added_policy=1
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ -z "$added_policy" ] || $sudo rm -f "$policy"
