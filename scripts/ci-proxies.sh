#!/usr/bin/env bash
# The real proxies that tests/test_proxy.py starts (Debian's packages: tinyproxy for HTTP
# CONNECT, dante-server for SOCKS5, stunnel4 for an https:// proxy), and the system user whose
# password dante's "username" method checks (it reads the system password database).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "== installing tinyproxy, dante-server, stunnel4"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tinyproxy dante-server stunnel4 \
    > /dev/null
id sigilws-proxy > /dev/null 2>&1 ||
    $SUDO useradd --no-create-home --shell /usr/sbin/nologin sigilws-proxy
echo "sigilws-proxy:sigilws-proxy-pw" | $SUDO chpasswd
