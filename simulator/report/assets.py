"""The page's style sheet and drawing script, inlined into every report (no CDN, no files).

Both are shipped beside this module (``report.css``, ``report.js``). The script (about
15 kB) draws each figure spec of ``figures.py`` as inline SVG: linear, log and tail axes
with round ticks, lines (with gaps), steps, bars, markers, reference lines, a legend, a
hover read-out, and drag-to-zoom on time axes shared by every timeline (double-click or
"reset zoom" to return). It needs no library; it sets ``data-rendered`` on ``<body>`` to
the number of figures drawn, and shows a figure's error inside the figure instead of
failing the page.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

#: Series colours (Tableau 10), shared by the page and the PNGs.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


@cache
def asset(name: str) -> str:
    """The text of ``report.css`` or ``report.js``, shipped beside this module."""
    return files("simulator.report").joinpath(name).read_text(encoding="utf-8")
