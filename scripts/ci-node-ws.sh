#!/usr/bin/env bash
# Node's ws (Debian's node-ws, which pulls in nodejs), a peer of tests/test_closing.py: it
# reports the close code it received, which a reset would have replaced with 1006. The tests
# skip when it is missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "== installing node-ws"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq node-ws > /dev/null
