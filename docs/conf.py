"""Sphinx configuration of the sigil-ws documentation (built by scripts/build-docs.sh).

The pages are Markdown (MyST), readable on GitHub as they are; the API reference is generated
by autodoc from the installed package: the docstrings of python/sigil_ws/*.py and those the
compiled module ``sigil_ws._core`` carries (its Rust ``///`` comments).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from sphinx.application import Sphinx

import sigil_ws

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "sigil-ws"
author = "the sigil-ws authors"
copyright = "the sigil-ws authors"
release = version = sigil_ws.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "benchtables",
    "publicnames",
    "clihelp",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "requirements.txt"]
root_doc = "index"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# The Rust classes' docstrings are rustdoc comments, written in Markdown: `code` in single
# backticks. Turn those into reStructuredText's double backticks for autodoc.
SINGLE_BACKTICKS = re.compile(r"(?<![`:])`([^`]+)`(?!`)")


def rustdoc_to_rst(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if ".".join(name.split(".")[:2]) in ("sigil_ws.Connection", "sigil_ws.Protocol"):
        text = SINGLE_BACKTICKS.sub(r"``\1``", "\n".join(lines))
        lines[:] = text.split("\n")


def attribute_as_written(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Undo napoleon on attributes and properties: it reads a first line such as "The
    resource name: path and query" as "type: description". Their docstrings are one sentence,
    with no section for napoleon to format."""
    if what in ("attribute", "property") and name.startswith("sigil_ws."):
        text = inspect.getdoc(obj) or ""
        if ".".join(name.split(".")[:2]) in ("sigil_ws.Connection", "sigil_ws.Protocol"):
            text = SINGLE_BACKTICKS.sub(r"``\1``", text)
        lines[:] = text.split("\n")


def setup(app: Sphinx) -> None:
    # Before napoleon (priority 500), which would take `ws:` in a first line for a type.
    app.connect("autodoc-process-docstring", rustdoc_to_rst, priority=100)
    app.connect("autodoc-process-docstring", attribute_as_written, priority=900)


html_theme = "furo"
html_title = f"sigil-ws {release}"
html_show_sourcelink = False
