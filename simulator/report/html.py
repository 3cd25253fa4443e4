"""One self-contained HTML page: tables written here, figures drawn by the inlined script.

The page carries its data as two JSON blocks, ``simreplay-summary`` (``summary.json``
exactly) and ``simreplay-figures`` (the figure specs), and every number of its tables as a
``data-value`` attribute beside the rounded text, so a reader or a test can check any
number against ``summary.json``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any

from simulator.report.assets import PALETTE, asset


def esc(text: Any) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def script_json(payload: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<`` at all.

    ``<`` can only occur inside JSON strings, where ``\\u003c`` means the same character, so
    neither ``</script>`` nor ``<!--`` can end or confuse the block.
    """
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c")


def number_cell(value: float | int | None, text: str, key: str | None = None) -> str:
    """A table cell showing ``text`` and carrying the exact ``value`` (and its summary key)."""
    attrs = f' data-value="{esc(json.dumps(value, allow_nan=False))}"'
    if key is not None:
        attrs += f' data-key="{esc(key)}"'
    return f"<td{attrs}>{esc(text)}</td>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], css_class: str = "") -> str:
    """An HTML table; cells of ``rows`` are already HTML (``<td>...</td>``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_value_table(rows: Iterable[tuple[str, str]]) -> str:
    """Two columns of label and (already escaped) value."""
    body = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def figure_div(spec: dict[str, Any]) -> str:
    """The box a figure is drawn into, with its title and caption (or, with nothing to draw,
    the reason, where the caption goes)."""
    text = spec.get("empty") or spec.get("caption")
    caption = f'<p class="caption">{esc(text)}</p>' if text else ""
    return (
        f'<div class="fig" id="fig-{esc(spec["id"])}"><h3>{esc(spec["title"])}</h3>'
        f'<div class="legend"></div><div class="plot"></div><div class="tip"></div>{caption}'
        "</div>"
    )


def page(title: str, body: str, summary: dict[str, Any], figures: list[dict[str, Any]]) -> str:
    """The whole document: style, body, data blocks and the drawing script, nothing external."""
    script = asset("report.js").replace("__PALETTE__", json.dumps(list(PALETTE)))
    css = asset("report.css")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{css}</style></head>\n"
        f"<body>\n{body}\n"
        "<noscript><p>The figures are drawn by the page's script; the tables above hold "
        "every number.</p></noscript>\n"
        f'<script type="application/json" id="simreplay-summary">{script_json(summary)}'
        "</script>\n"
        f'<script type="application/json" id="simreplay-figures">{script_json(figures)}'
        "</script>\n"
        f"<script>{script}</script>\n</body></html>\n"
    )
