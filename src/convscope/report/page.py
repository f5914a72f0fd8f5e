"""A small static-page builder: a page of sections, each a grid of cards with figures.

The demo builds on it now; the microscope report grows from it (more sections and card kinds).
Pages are self-contained folders: ``index.html`` plus PNG assets under ``img/``.

A :class:`Card` is a box in its section's grid: a title, a row of :class:`Figure` s and free HTML
below them (:func:`bars`, :func:`table`). A ``wide`` card takes the whole width of the page and
stacks its figures; a figure with a ``width`` is drawn at that CSS width (height from its aspect
ratio) instead of the default 200 x 200 thumbnail, and a ``link`` figure opens at full size when
clicked.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

__all__ = ["Card", "Figure", "Page", "Section", "bars", "table"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232a}
header{background:#1d232a;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#b8c2cc;font-size:14px}
main{padding:8px 28px 40px} section h2{font-size:18px;margin:26px 0 4px}
section>p{margin:0 0 12px;color:#4a5561;font-size:14px;max-width:900px}
.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:12px}
.card h3{margin:0 0 8px;font-size:15px}
.figs{display:flex;gap:8px} figure{margin:0;text-align:center}
figure img{display:block;width:200px;height:200px;image-rendering:auto;border-radius:4px}
figcaption{font-size:12px;color:#4a5561;margin-top:3px}
table.bars{border-collapse:collapse;font-size:12px;margin-top:8px;width:100%}
table.bars td{padding:1px 4px;white-space:nowrap}
.bar{background:#3b82f6;height:10px;border-radius:2px}
footer{color:#6b7682;font-size:12px;padding:0 28px 24px}
.card.wide{flex:1 1 100%;min-width:0}
.card.wide .figs{flex-direction:column;align-items:flex-start}
.card.wide .figs.strip{flex-direction:row;flex-wrap:wrap;align-items:flex-start}
figure.sized{max-width:100%} figure.sized img{width:100%;height:auto}
.card.wide figure.sized figcaption{text-align:left}
.card.wide .strip figure.sized figcaption{text-align:center;overflow-wrap:anywhere}
.body{font-size:13px;color:#1d232a;margin-bottom:14px}
.note{font-size:13px;color:#4a5561;margin:6px 0 0}
table.data{border-collapse:collapse;font-size:12px;margin-top:8px}
table.data th,table.data td{padding:3px 8px;text-align:left;border-bottom:1px solid #e3e7eb;vertical-align:top}
table.data th{color:#4a5561;font-weight:600}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


@dataclass
class Figure:
    """An image (``src``, relative to the page) with a caption (a line break in it breaks the line).
    ``width``: a CSS width (``"120px"``, ``"80%"`` of the card) to draw it at, keeping its aspect
    ratio; None: the 200 x 200 thumbnail. ``link``: clicking it opens the image at full size."""

    src: str
    caption: str = ""
    width: str | None = None
    link: bool = False


@dataclass
class Card:
    """A box of figures and HTML. ``wide``: the whole width of the page, figures stacked (or in a
    wrapping row with ``strip``)."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    body_html: str = ""
    wide: bool = False
    strip: bool = False


@dataclass
class Section:
    """A titled part of the page: an intro paragraph (plain text), optional HTML below it, and a
    grid of cards."""

    title: str
    intro: str = ""
    cards: list[Card] = field(default_factory=list)
    body_html: str = ""


@dataclass
class Page:
    """A page and its assets; :meth:`files` gives everything to write, index.html included."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    footer: str = ""
    assets: dict[str, bytes] = field(default_factory=dict)

    def add_asset(self, name: str, data: bytes) -> str:
        """Store ``data`` as ``img/<name>``; returns the relative path to use in a Figure."""
        path = f"img/{name}"
        if path in self.assets:
            raise ValueError(f"asset {path} added twice")
        self.assets[path] = data
        return path

    def render(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width,initial-scale=1'>",
            f"<title>{e(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<header><h1>{e(self.title)}</h1><p>{e(self.subtitle)}</p></header><main>",
        ]
        for s in self.sections:
            parts.append(f"<section><h2>{e(s.title)}</h2>")
            if s.intro:
                parts.append(f"<p>{e(s.intro)}</p>")
            if s.body_html:
                parts.append(f"<div class='body'>{s.body_html}</div>")
            parts.append("<div class='grid'>")
            parts.extend(_card(c) for c in s.cards)
            parts.append("</div></section>")
        parts.append(f"</main><footer>{e(self.footer)}</footer></body></html>")
        return "\n".join(parts)

    def files(self) -> dict[str, bytes]:
        return {"index.html": self.render().encode("utf-8"), **self.assets}


def _figure(f: Figure) -> str:
    e = html.escape
    img = f"<img src='{e(f.src)}' alt='{e(' '.join(f.caption.split()))}'>"
    if f.link:
        img = f"<a href='{e(f.src)}'>{img}</a>"
    attrs = f" class='sized' style='width:{e(f.width)}'" if f.width else ""
    caption = "<br>".join(e(line) for line in f.caption.split("\n"))
    return f"<figure{attrs}>{img}<figcaption>{caption}</figcaption></figure>"


def _card(c: Card) -> str:
    e = html.escape
    cls = "card wide" if c.wide else "card"
    figs = "".join(_figure(f) for f in c.figures)
    figs_cls = "figs strip" if c.strip else "figs"
    figs_html = f"<div class='{figs_cls}'>{figs}</div>" if c.figures else ""
    return f"<div class='{cls}'><h3>{e(c.title)}</h3>{figs_html}{c.body_html}</div>"


def table(header: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped text (floats with 2 decimals). ``numeric``: the column
    indices to right-align."""
    e = html.escape
    numeric = numeric or set()

    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{e(cell(v))}</td>" if j in numeric else f"<td>{e(cell(v))}</td>"
            for j, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table class='data'><tr>{head}</tr>{body}</table>"


def bars(rows: list[tuple[str, float]]) -> str:
    """An HTML table of labelled horizontal bars for values in [0, 1] (e.g. top-5 probabilities)."""
    e = html.escape
    cells = "".join(
        f"<tr><td>{e(label)}</td><td style='width:45%'><div class='bar' "
        f"style='width:{max(1.0, 100 * value):.1f}%'></div></td><td>{value:.1%}</td></tr>"
        for label, value in rows
    )
    return f"<table class='bars'>{cells}</table>"
