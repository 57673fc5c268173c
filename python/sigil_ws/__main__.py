"""``python -m sigil_ws URL``: the command-line client (see ``sigil_ws._cli``)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
