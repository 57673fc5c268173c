"""SVG charts of a benchmark run, drawn from the summary table that bench/run.py writes.

Three charts, written beside the JSON they come from (``latest.json`` gives
``latest-headline.svg`` and so on):

- headline: messages/s of sigil-ws (sync and asyncio) and of the best-known peers, as a ratio
  to the fastest peer of each scenario, for the scenarios a reader compares first;
- throughput: one panel per scenario, messages/s (KiB per idle connection for idle-rss) of every
  client and floor;
- cpu: one panel per scenario, client CPU µs per message;
- threads: one panel per threads scenario and per scenario run on both interpreters, messages/s
  of each library on the GIL build beside the same library on the free-threaded 3.14t (clients
  named ``...@3.14t``), the floor as a dashed line (drawn only when the run has such rows).

The SVGs are deterministic for a given table (fixed hash salt, no date), so re-rendering an
unchanged JSON leaves them byte for byte as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

FT = "@3.14t"  # the suffix of a client run on the free-threaded interpreter (bench/run.py)
OURS = ("sigil-ws", "sigil-ws-asyncio", f"sigil-ws{FT}", f"sigil-ws-asyncio{FT}")
# Runs written before the table marked its floors ("floor": true) name them here.
FLOORS = (
    "native-pingpong",
    "native-tls-pingpong",
    "native-ws-pingpong",
    "native-wss-pingpong",
    "native-inflate",
    "raw",
    "pyobj",
)

# The scenarios of the headline chart, in reading order, with a caption each.
HEADLINE = [
    ("pingpong-64", "ping-pong 64 B"),
    ("pingpong-1m", "ping-pong 1 MiB"),
    ("push-64", "push 64 B"),
    ("push-16k", "push 16 KiB"),
    ("setup-ws", "connect + close"),
    ("wss-pingpong-64", "wss ping-pong 64 B"),
    ("wss-push-16k", "wss push 16 KiB"),
    ("setup-wss", "wss connect + close"),
    ("deflate-push-1k", "compressed push 1 KiB"),
    ("deflate-pingpong-16k", "compressed ping-pong 16 KiB"),
]
# Each headline series: a label and the clients it stands for (the faster one counts).
SERIES = [
    ("sigil-ws (sync)", ("sigil-ws",)),
    ("sigil-ws (asyncio)", ("sigil-ws-asyncio",)),
    ("websockets", ("websockets", "websockets-asyncio")),
    ("websocket-client", ("websocket-client",)),
    ("aiohttp", ("aiohttp",)),
]
COLOURS = {
    "sigil-ws (sync)": "#c2410c",
    "sigil-ws (asyncio)": "#f59e0b",
    "websockets": "#2563eb",
    "websocket-client": "#64748b",
    "aiohttp": "#0d9488",
}
OUR_COLOUR, PEER_COLOUR, FLOOR_COLOUR = "#c2410c", "#94a3b8", "#1e293b"
# The free-threaded bars of the threads chart: the same hues, lighter and hatched.
OUR_FT_COLOUR, PEER_FT_COLOUR = "#fdba74", "#e2e8f0"

Row = dict[str, Any]


def chart_paths(json_path: Path) -> dict[str, Path]:
    """Where the charts of ``json_path`` go: beside it, named after it."""
    stem = json_path.with_suffix("")
    kinds = ("headline", "throughput", "cpu", "threads")
    return {kind: Path(f"{stem}-{kind}.svg") for kind in kinds}


def render_charts(table: list[Row], meta: dict[str, Any], json_path: Path) -> list[Path]:
    """Draw every chart of one run; returns the files written."""
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams.update(
        {
            "svg.hashsalt": "sigil-ws-bench",
            "svg.fonttype": "none",
            "font.family": ["DejaVu Sans", "sans-serif"],
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    paths = chart_paths(json_path)
    subtitle = f"{meta['mode']} run, {meta['rounds']} round(s), {meta['date']}, {meta['machine']}"
    headline(table, subtitle, paths["headline"])
    panels(
        table,
        subtitle,
        paths["throughput"],
        "messages/s (median)",
        lambda row: float(row["rate"]),
        idle=lambda row: float(row["per_conn_kb"]),
    )
    panels(
        table,
        subtitle,
        paths["cpu"],
        "client CPU µs per message (median; lower is better)",
        lambda row: float(row["cpu_us"]),
    )
    written = [paths["headline"], paths["throughput"], paths["cpu"]]
    if interpreters(table, subtitle, paths["threads"]):
        written.append(paths["threads"])
    return written


def by_scenario(table: list[Row]) -> dict[str, dict[str, Row]]:
    out: dict[str, dict[str, Row]] = {}
    for row in table:
        out.setdefault(row["scenario"], {})[row["client"]] = row
    return out


def headline(table: list[Row], subtitle: str, path: Path) -> None:
    """Grouped horizontal bars: each series' messages/s over the fastest peer's."""
    import matplotlib.pyplot as plt

    rows = by_scenario(table)
    shown = [(name, caption) for name, caption in HEADLINE if name in rows]
    fig, ax = plt.subplots(figsize=(8, 0.75 * len(shown) + 1.6))
    height = 0.8 / len(SERIES)
    for s, (label, clients) in enumerate(SERIES):
        ys, xs = [], []
        for i, (name, _) in enumerate(shown):
            best = best_peer(rows[name])
            rates = [rows[name][c]["rate"] for c in clients if c in rows[name]]
            if best is None or not rates:
                continue
            ys.append(i + (s - (len(SERIES) - 1) / 2) * height)
            xs.append(max(rates) / best[1])
        bars = ax.barh(ys, xs, height=height, color=COLOURS[label], label=label)
        if label.startswith("sigil-ws"):
            ax.bar_label(bars, fmt="%.2fx", padding=2, fontsize=7)
    labels = []
    for name, caption in shown:
        best = best_peer(rows[name])
        labels.append(f"{caption}\n(fastest peer: {best[0]})" if best else caption)
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.axvline(1.0, color=FLOOR_COLOUR, linewidth=0.8, linestyle="--")
    ax.set_xlabel("messages/s relative to the fastest other library in each scenario (1.0)")
    ax.set_title(f"sigil-ws against other Python WebSocket clients\n{subtitle}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout()
    save(fig, path)


def is_floor(row: Row) -> bool:
    return bool(row.get("floor", row["client"] in FLOORS))


def best_peer(rows: dict[str, Row]) -> tuple[str, float] | None:
    """The fastest client on the GIL build that is neither ours nor a floor: (name,
    messages/s)."""
    peers = [
        (c, float(r["rate"]))
        for c, r in rows.items()
        if c not in OURS and not is_floor(r) and not c.endswith(FT)
    ]
    return max(peers, key=lambda p: p[1]) if peers else None


def interpreters(table: list[Row], subtitle: str, path: Path) -> bool:
    """Each library's messages/s on the GIL build beside the free-threaded 3.14t, one panel per
    threads scenario or scenario run on both; False (nothing drawn) when the run has none."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    rows = by_scenario(table)
    names = [n for n in rows if n.startswith("threads-") or any(c.endswith(FT) for c in rows[n])]
    if not names:
        return False
    cols = 2
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(10, 2.8 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        clients = [c for c, r in rows[name].items() if not is_floor(r)]
        libraries = list(dict.fromkeys(c.removesuffix(FT) for c in clients))
        floors = [(c, float(r["rate"])) for c, r in rows[name].items() if is_floor(r)]
        rates = [float(r["rate"]) for r in rows[name].values() if float(r["rate"]) > 0]
        top, bottom = max(rates, default=1.0), min(rates, default=1.0)
        # Libraries differ by a factor of 100 in the push rows: a log axis keeps every bar
        # readable.
        log = top > 30 * bottom
        if log:
            ax.set_xscale("log")
        for i, library in enumerate(libraries):
            ours = library in OURS
            for offset, client, colour, hatch in (
                (-0.2, library, OUR_COLOUR if ours else PEER_COLOUR, None),
                (0.2, f"{library}{FT}", OUR_FT_COLOUR if ours else PEER_FT_COLOUR, "///"),
            ):
                row = rows[name].get(client)
                if row is None:
                    continue
                rate = float(row["rate"])
                bar = ax.barh(
                    [i + offset], [rate], height=0.4, color=colour, hatch=hatch, edgecolor="#475569"
                )
                label = short(rate)
                if row.get("vs_gil") is not None:
                    label += f" ({row['vs_gil']:.2f}x)"
                ax.bar_label(bar, labels=[label], padding=2, fontsize=6)
        # Each floor a dashed line, labelled in a row of its own above the bars.
        for j, (client, rate) in enumerate(floors):
            ax.axvline(rate, color=FLOOR_COLOUR, linewidth=0.8, linestyle="--")
            ax.text(rate, -0.7 - 0.45 * j, f" {client} {short(rate)}", fontsize=6, va="center")
        ax.set_yticks(range(len(libraries)), libraries, fontsize=7)
        for tick, library in zip(ax.get_yticklabels(), libraries, strict=True):
            if library in OURS:
                tick.set_fontweight("bold")
        ax.set_ylim(len(libraries) - 0.4, -0.5 - 0.45 * max(len(floors), 1))
        if log:
            ax.set_xlim(bottom / 2, top * 6)
        else:
            ax.set_xlim(0, top * 1.35)
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v) if v >= 1e4 else f"{v:g}"))
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    handles = [
        Patch(facecolor=PEER_COLOUR, edgecolor="#475569", label="GIL build"),
        Patch(
            facecolor=PEER_FT_COLOUR, edgecolor="#475569", hatch="///", label="free-threaded 3.14t"
        ),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(
        "messages/s (median): each library on the GIL build and on the free-threaded 3.14t "
        "(ratio to the GIL build in brackets); floors dashed, sigil-ws in orange\n"
        f"{subtitle}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save(fig, path)
    return True


def panels(
    table: list[Row],
    subtitle: str,
    path: Path,
    xlabel: str,
    value: Callable[[Row], float],
    idle: Callable[[Row], float] | None = None,
) -> None:
    """Small multiples: one panel per scenario, one bar per client."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    rows = by_scenario(table)
    names = [n for n in rows if idle is not None or not n.startswith("idle-")]
    cols = 3
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(11, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        clients = list(rows[name])
        if name.startswith("idle-") and idle is not None:
            values = [idle(rows[name][c]) for c in clients]
            ax.set_title(f"{name}: KiB per connection", fontsize=9)
        else:
            values = [value(rows[name][c]) for c in clients]
            ax.set_title(name, fontsize=9)
        bars = ax.barh(range(len(clients)), values, color=colours(rows[name]))
        ax.bar_label(bars, labels=[short(v) for v in values], padding=2, fontsize=6)
        ax.set_yticks(range(len(clients)), clients, fontsize=7)
        for tick, client in zip(ax.get_yticklabels(), clients, strict=True):
            if client in OURS:
                tick.set_fontweight("bold")
        ax.invert_yaxis()
        ax.set_xlim(0, max(values, default=1.0) * 1.25 or 1.0)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v) if v >= 1e4 else f"{v:g}"))
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    note = " (idle-*: lower is better)" if idle is not None else ""
    fig.suptitle(f"{xlabel}; floors in black, sigil-ws in orange{note}\n{subtitle}", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def colours(rows: dict[str, Row]) -> list[str]:
    return [
        OUR_COLOUR if c in OURS else FLOOR_COLOUR if is_floor(r) else PEER_COLOUR
        for c, r in rows.items()
    ]


def short(value: float) -> str:
    """A bar or tick label: 14.2M, 312k, 1,527, 24.3, 0.07, 0."""
    if value == 0:
        return "0"
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
