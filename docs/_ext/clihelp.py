"""``sigil-cli-help``: the command line's ``--help``, as the installed package prints it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class CliHelp(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        out = subprocess.run(
            [sys.executable, "-m", "sigil_ws", "--help"],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, COLUMNS="90"),
        )
        return [nodes.literal_block(out.stdout, out.stdout, language="text")]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sigil-cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
