#!/usr/bin/env bash
# The system packages the tests use that pip cannot bring: redis-server (the scale-out tests run
# against a real one) and chromium (two tests render pages in it). Installed with apt-get when
# missing and this user may (root, or sudo without a password); otherwise the tests that need them
# skip, saying why. BOTCTL_REQUIRE_REDIS=1 (CI) makes a missing redis-server an error.
set -uo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo_cmd=(sudo -n); else sudo_cmd=(none); fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "${sudo_cmd[*]}" = none ]; then
  echo "system-deps: not installing ${missing[*]} (needs apt-get as root); the tests that use them will skip" >&2
else
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq || echo "system-deps: apt-get update failed; trying with the lists the machine has" >&2
  for package in "${missing[@]}"; do
    "${sudo_cmd[@]}" apt-get install -y -qq "$package" >/dev/null \
      || echo "system-deps: $package could not be installed; the tests that use it will skip" >&2
  done
fi
if [ "${BOTCTL_REQUIRE_REDIS:-}" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
  echo "system-deps: ERROR: redis-server is required here and could not be installed" >&2
  exit 1
fi
exit 0
