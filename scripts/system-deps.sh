#!/usr/bin/env bash
# System libraries WeasyPrint needs (Pango, HarfBuzz subsetting), the fonts the packs are set in,
# poppler-utils (PDF → PNG for visual checks), and Debian's chromium with its driver (the web view's
# browser test drives it with Selenium; nothing downloads a browser build), and Java 17 for Spark in local mode
# (the drift push-down tests). Installs only what is missing; needs root + apt.
set -euo pipefail
pkgs=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils chromium chromium-driver
      openjdk-17-jre-headless)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "please install: ${missing[*]} (Debian/Ubuntu package names)" >&2
  exit 0
fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
