"""A small static-page builder: a page of sections, each a grid of cards with figures.

The demo builds on it now; the microscope report grows from it (more sections and card kinds).
Pages are self-contained folders: ``index.html`` plus PNG assets under ``img/``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

__all__ = ["Card", "Figure", "Page", "Section", "bars"]

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
"""


@dataclass
class Figure:
    src: str
    caption: str = ""


@dataclass
class Card:
    title: str
    figures: list[Figure] = field(default_factory=list)
    body_html: str = ""


@dataclass
class Section:
    title: str
    intro: str = ""
    cards: list[Card] = field(default_factory=list)


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
            parts.append("<div class='grid'>")
            for c in s.cards:
                figs = "".join(
                    f"<figure><img src='{e(f.src)}' alt='{e(f.caption)}'>"
                    f"<figcaption>{e(f.caption)}</figcaption></figure>"
                    for f in c.figures
                )
                parts.append(
                    f"<div class='card'><h3>{e(c.title)}</h3><div class='figs'>{figs}</div>"
                    f"{c.body_html}</div>"
                )
            parts.append("</div></section>")
        parts.append(f"</main><footer>{e(self.footer)}</footer></body></html>")
        return "\n".join(parts)

    def files(self) -> dict[str, bytes]:
        return {"index.html": self.render().encode("utf-8"), **self.assets}


def bars(rows: list[tuple[str, float]]) -> str:
    """An HTML table of labelled horizontal bars for values in [0, 1] (e.g. top-5 probabilities)."""
    e = html.escape
    cells = "".join(
        f"<tr><td>{e(label)}</td><td style='width:45%'><div class='bar' "
        f"style='width:{max(1.0, 100 * value):.1f}%'></div></td><td>{value:.1%}</td></tr>"
        for label, value in rows
    )
    return f"<table class='bars'>{cells}</table>"
