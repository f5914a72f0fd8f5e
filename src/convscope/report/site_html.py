"""The static site's page shell: one stylesheet, a navigation bar with an offline search box, and
the search script (:mod:`convscope.report.site` fills the pages).

The search index is a script (``search-index.js`` sets ``window.CONVSCOPE_INDEX``), not a JSON
file fetched at run time: browsers refuse ``fetch()`` of a local file, and a ``<script src>`` works
alike from ``file://`` and from any static host. The search script builds its results with DOM
text nodes, so a corpus file name can never become markup.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["SEARCH_JS", "STYLE_CSS", "index_js", "shell"]

STYLE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232a}
nav{background:#1d232a;color:#fff;padding:10px 24px;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
nav a{color:#cfe0ff;text-decoration:none;font-size:14px} nav b{font-size:16px}
nav .search{margin-left:auto;position:relative}
nav input{width:280px;padding:5px 8px;border-radius:4px;border:0;font-size:14px}
#results{position:absolute;right:0;top:32px;z-index:9;background:#fff;color:#1d232a;list-style:none;
margin:0;padding:0;width:420px;max-height:420px;overflow:auto;box-shadow:0 4px 14px rgba(0,0,0,.25);border-radius:4px}
#results li{padding:5px 10px;border-bottom:1px solid #eef0f2;font-size:13px}
#results li a{color:#1d4ed8} #results .kind{color:#6b7682;font-size:11px;margin-right:6px}
#results .detail{color:#6b7682;font-size:11px;display:block}
main{padding:8px 24px 40px} h1{font-size:21px;margin:16px 0 4px} h2{font-size:17px;margin:22px 0 6px}
p.note{font-size:13px;color:#4a5561;margin:4px 0 10px;max-width:960px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:10px}
.unit{width:150px;text-align:center;font-size:12px} .unit img{width:64px;height:64px;border-radius:3px}
.unit a{text-decoration:none;color:#1d232a}
.thumb{text-align:center;font-size:11px;color:#4a5561;max-width:132px;overflow-wrap:anywhere} .thumb img{border-radius:3px;display:block}
main img{max-width:100%;height:auto} img{image-rendering:auto} .pixel{image-rendering:pixelated}
table.data{border-collapse:collapse;font-size:12px;margin-top:8px;background:#fff}
table.data th,table.data td{padding:3px 8px;text-align:left;border-bottom:1px solid #e3e7eb;vertical-align:top}
table.data th{color:#4a5561;font-weight:600} table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.bars{border-collapse:collapse;font-size:12px;margin-top:8px;width:420px}
table.bars td{padding:1px 4px;white-space:nowrap} .bar{background:#3b82f6;height:10px;border-radius:2px}
.emb{position:relative;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.emb a{position:absolute} .emb img{display:block;border-radius:2px}
footer{color:#6b7682;font-size:12px;padding:0 24px 24px}
"""

SEARCH_JS = """(function () {
  var root = document.body.getAttribute("data-root") || "";
  var box = document.getElementById("q"), out = document.getElementById("results");
  var index = window.CONVSCOPE_INDEX || [];
  function run() {
    var q = box.value.trim().toLowerCase();
    while (out.firstChild) out.removeChild(out.firstChild);
    if (!q) return;
    var terms = q.split(/\\s+/), shown = 0;
    for (var i = 0; i < index.length && shown < 50; i++) {
      var e = index[i], hay = (e[1] + " " + e[3]).toLowerCase();
      if (!terms.every(function (t) { return hay.indexOf(t) >= 0; })) continue;
      var li = document.createElement("li"), kind = document.createElement("span");
      kind.className = "kind"; kind.textContent = e[0];
      var a = document.createElement("a"); a.href = root + e[2]; a.textContent = e[1];
      li.appendChild(kind); li.appendChild(a);
      if (e[3]) {
        var d = document.createElement("span"); d.className = "detail"; d.textContent = e[3];
        li.appendChild(d);
      }
      out.appendChild(li); shown++;
    }
    if (!shown) {
      var none = document.createElement("li"); none.textContent = "no match"; out.appendChild(none);
    }
  }
  box.addEventListener("input", run);
  box.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { var a = out.querySelector("a"); if (a) window.location.href = a.href; }
  });
})();
"""


def index_js(entries: list[list[str]]) -> bytes:
    """The search index as a script: ``[kind, name, url relative to the site root, detail]`` rows."""
    body = json.dumps(entries, ensure_ascii=True, separators=(",", ":"))
    return f"window.CONVSCOPE_INDEX={body};\n".encode()


def shell(title: str, body: str, *, root: str, model: str, footer: str = "") -> bytes:
    """A whole page: the navigation bar (model, embedding, images, search) and ``body``.
    ``root`` is the relative path from the page to the site's root (``""``, ``"../"``...)."""
    e = html.escape
    r = e(root)
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(title)}</title><link rel='stylesheet' href='{r}style.css'></head>"
        f"<body data-root='{r}'><nav><b>convscope microscope</b>"
        f"<a href='{r}index.html'>{e(model)}</a><a href='{r}images.html'>images</a>"
        f"<a href='{r}embedding.html'>embedding</a>"
        "<span class='search'><input id='q' type='search' autocomplete='off' "
        "placeholder='search layers, units, classes, images' aria-label='search'>"
        "<ul id='results'></ul></span></nav>"
        f"<main>{body}</main><footer>{e(footer)}</footer>"
        f"<script src='{r}search-index.js'></script><script src='{r}search.js'></script>"
        "</body></html>"
    )
    return page.encode("utf-8")


def img(src: str, alt: str, width: int, height: int, cls: str = "") -> str:
    """A lazily loaded image with its size (so the page does not jump as images arrive)."""
    e = html.escape
    c = f" class='{e(cls)}'" if cls else ""
    return (
        f"<img src='{e(src)}' alt='{e(alt)}' width='{width}' height='{height}' "
        f"loading='lazy' decoding='async'{c}>"
    )


def link(href: str, text: str) -> str:
    return f"<a href='{html.escape(href)}'>{html.escape(text)}</a>"


def esc(value: Any) -> str:
    return html.escape(str(value))
