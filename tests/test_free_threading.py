"""Free-threaded CPython: importing sigil-ws keeps the GIL disabled, and the build is what
the interpreter says it is."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import sigil_ws

from .conftest import FREE_THREADED

pytestmark = pytest.mark.skipif(
    not FREE_THREADED, reason="a GIL build: the GIL cannot be disabled here"
)

# Every module of the package, the command-line client's included, imported in one fresh
# interpreter with PYTHON_GIL unset: an extension module that does not declare itself safe
# without the GIL makes CPython turn the GIL back on (with a RuntimeWarning) at its import.
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys, warnings
    warnings.simplefilter("error")
    import sigil_ws
    names = ["sigil_ws"] + [
        f"sigil_ws.{m.name}" for m in pkgutil.iter_modules(sigil_ws.__path__)
        if m.name != "__main__"
    ]
    for name in names:
        importlib.import_module(name)
    import sigil_ws.__main__  # the `python -m sigil_ws` entry point (not run on import)
    print(sys._is_gil_enabled(), " ".join(sorted(names)))
    """
)


def test_importing_every_module_keeps_the_gil_disabled() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    enabled, names = out.stdout.split(maxsplit=1)
    assert enabled == "False", out.stderr
    assert not out.stderr, out.stderr
    # The modules named in the contract are among those imported.
    for module in ("sigil_ws", "sigil_ws.asyncio", "sigil_ws._cli", "sigil_ws._core"):
        assert module in names.split()


def test_the_extension_is_built_for_this_interpreter() -> None:
    """A free-threaded interpreter loads only a cp314t build (an abi3 one is refused): the
    loaded extension carries the interpreter's own suffix."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert "t-" in suffix, suffix
    assert sigil_ws._core.__file__ is not None
    assert sigil_ws._core.__file__.endswith(suffix), sigil_ws._core.__file__
