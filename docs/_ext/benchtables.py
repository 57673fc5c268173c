"""``bench-table``: a table of benchmark results read from bench/results/latest.json at build time.

In a Markdown page::

    ```{bench-table}
    :scenarios: push-64 push-16k
    :columns: rate cpu_us vs_best_peer
    ```

Rows come in the order of the run's summary table; sigil-ws' own rows are in bold. The
figures are those of the committed run, so a page never quotes a number the JSON does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"
OURS = {"sigil-ws", "sigil-ws-asyncio"}

# column key -> (heading, format of a value)
COLUMNS: dict[str, tuple[str, str]] = {
    "rate": ("msg/s", ",.0f"),
    "mb_s": ("MB/s", ",.1f"),
    "cpu_us": ("client CPU µs/msg", ".2f"),
    "server_us": ("server CPU µs/msg", ".2f"),
    "rss_mb": ("peak RSS MB", ".0f"),
    "per_conn_kb": ("KiB per idle connection", ".1f"),
    "vs_best_peer": ("vs best peer", ".2f"),
    "vs_floor": ("vs floor", ".2f"),
}


def load() -> dict[str, Any]:
    return dict(json.loads(RESULTS.read_text()))


class BenchTable(SphinxDirective):
    option_spec: ClassVar[dict[str, Any]] = {
        "scenarios": directives.unchanged_required,
        "columns": directives.unchanged,
        "clients": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(RESULTS))
        saved = load()
        scenarios = self.options["scenarios"].split()
        columns = self.options.get("columns", "rate cpu_us vs_best_peer vs_floor").split()
        clients = self.options.get("clients", "").split()
        for key in columns:
            if key not in COLUMNS:
                raise self.error(f"bench-table: unknown column {key!r}")
        known = {row["scenario"] for row in saved["table"]}
        for name in scenarios:
            if name not in known:
                raise self.error(f"bench-table: no scenario {name!r} in {RESULTS.name}")
        rows = [
            row
            for row in saved["table"]
            if row["scenario"] in scenarios and (not clients or row["client"] in clients)
        ]
        header = ["scenario", "client", *(COLUMNS[c][0] for c in columns)]
        body = []
        for row in rows:
            cells = [row["scenario"], row["client"]]
            for key in columns:
                value = row.get(key)
                cells.append("" if value is None else format(value, COLUMNS[key][1]))
            body.append((row["client"] in OURS, cells))
        meta = saved["meta"]
        caption = f"{meta['mode']} run of {meta['date']}, {meta['rounds']} round(s), medians"
        return [table(header, body, caption)]


def table(header: list[str], body: list[tuple[bool, list[str]]], caption: str) -> nodes.table:
    node = nodes.table(classes=["bench-table"])
    node += nodes.title(text=caption)
    group = nodes.tgroup(cols=len(header))
    node += group
    for i, heading in enumerate(header):
        widest = max([len(heading), *(len(cells[i]) for _, cells in body)])
        group += nodes.colspec(colwidth=widest + 4)  # room for the bold markers of text output
    thead = nodes.thead()
    group += thead
    thead += row_node(header, bold=False)
    tbody = nodes.tbody()
    group += tbody
    for bold, cells in body:
        tbody += row_node(cells, bold)
    return node


def row_node(cells: list[str], bold: bool) -> nodes.row:
    row = nodes.row()
    for text in cells:
        entry = nodes.entry()
        paragraph = nodes.paragraph()
        paragraph += nodes.strong(text=text) if bold else nodes.Text(text)
        entry += paragraph
        row += entry
    return row


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("bench-table", BenchTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
