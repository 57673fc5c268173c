#!/usr/bin/env bash
# Install sigil-ws into .venv and run a real round trip against a local echo server.
# shellcheck source=scripts/env.sh
. "$(dirname "$0")/env.sh"
python examples/echo_roundtrip.py
