"""``sigil-public-names``: autodoc entries for the public names api.rst does not list itself.

The reference groups the names of ``sigil_ws.__all__`` by hand (sync client, exceptions, …).
A name added to the package later, and not yet placed in a group, still gets its entry here,
generated from its docstring, so the reference never silently misses part of the API.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

import sigil_ws

DOCUMENTED = re.compile(r"::\s+sigil_ws\.(\w+)")


def directive_for(obj: object) -> str:
    if inspect.ismodule(obj):
        return "automodule"
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    return "autofunction" if callable(obj) else "autodata"


class PublicNames(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        page = Path(self.env.doc2path(self.env.docname)).read_text()
        documented = set(DOCUMENTED.findall(page))
        missing = [name for name in sigil_ws.__all__ if name not in documented]
        if not missing:
            return []
        lines = [".. rubric:: Other public names", ""]
        for name in missing:
            lines += [f".. {directive_for(getattr(sigil_ws, name))}:: sigil_ws.{name}", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="sigil-public-names"), 0, container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("sigil-public-names", PublicNames)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
