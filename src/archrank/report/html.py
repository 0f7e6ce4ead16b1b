"""One self-contained HTML page from report sections: styles inline, every plot an SVG image in
a ``data:`` URL (isolated, so the ids of one figure cannot clash with another's), cell drawings
inline SVG. Nothing is fetched: no script, font, stylesheet or image from the network."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from html import escape

from archrank.report import figures
from archrank.report.kinds import Drawing, Figure, Section, Table

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;
background:#f6f7f9}
header{background:#24292f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c9d1d9;font-size:13px}
main{max-width:1400px;margin:0 auto;padding:8px 24px 40px}
nav{margin:14px 0;font-size:13px}nav a{margin-right:14px;color:#0969da}
section{background:#fff;border:1px solid #d8dee4;border-radius:8px;margin:18px 0;
padding:8px 20px 16px}
h2{font-size:17px;margin:10px 0 2px}.intro{color:#57606a;margin:0 0 8px;font-size:13px}
.blocks{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;flex:0 1 auto;max-width:100%}
figure.plot,figure.drawing{display:table}
figure img,figure svg{display:block;max-width:100%;height:auto;background:#fff}
figcaption{font-size:12.5px;color:#444;margin-top:4px;overflow-wrap:anywhere}
figure.plot figcaption,figure.drawing figcaption{display:table-caption;caption-side:bottom}
.tbl figcaption{max-width:720px}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:3px 8px;text-align:right}
th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}
td.cell{text-align:left;font-family:ui-monospace,monospace;font-size:11.5px;overflow-wrap:anywhere}
.tbl{flex:1 1 100%}
"""


def _figure(block: Figure) -> str:
    svg = figures.to_svg(block.figure)
    data = base64.b64encode(svg.encode()).decode("ascii")
    return (f'<figure class="plot" data-name="{escape(block.name)}">'
            f'<img alt="{escape(block.name)}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{escape(block.caption)}</figcaption></figure>")


def _table(block: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in block.header)
    last = len(block.header) - 1
    body = "".join(
        "<tr>" + "".join(f'<td{" class=cell" if k == last and block.cells else ""}>'
                         f"{escape(c)}</td>" for k, c in enumerate(row)) + "</tr>"
        for row in block.rows)
    return (f'<figure class="tbl"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table><figcaption>{escape(block.caption)}</figcaption></figure>")


def _drawing(block: Drawing) -> str:
    return (f'<figure class="drawing">{block.svg}'
            f"<figcaption>{escape(block.caption)}</figcaption></figure>")


def render_html(sections: Sequence[Section], title: str, sources: Sequence[str]) -> str:
    parts = []
    nav = []
    for k, sec in enumerate(sections):
        anchor = f"s{k}"
        nav.append(f'<a href="#{anchor}">{escape(sec.title)}</a>')
        blocks = []
        for b in sec.blocks:
            if isinstance(b, Figure):
                blocks.append(_figure(b))
            elif isinstance(b, Table):
                blocks.append(_table(b))
            else:
                blocks.append(_drawing(b))
        intro = f'<p class="intro">{escape(sec.intro)}</p>' if sec.intro else ""
        parts.append(f'<section id="{anchor}"><h2>{escape(sec.title)}</h2>{intro}'
                     f'<div class="blocks">{"".join(blocks)}</div></section>')
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    src = ", ".join(sources)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            # No network, even by accident: only inline styles and data: images may load.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p>archrank report · {when} · "
            f"{escape(src)}</p></header><main><nav>{''.join(nav)}</nav>{''.join(parts)}"
            "</main></body></html>\n")
