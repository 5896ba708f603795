"""No remote content without a click in what Python renders (live view, saved ``text/html``).

An image URL in the model's Markdown, or any resource an HTML output of sandbox code refers to,
would be fetched by the browser that shows it: a channel out of a network-less sandbox, and a way
for a prompt-injected model to leak notebook context. So:

- Markdown images (:func:`image_placeholder`) that are not ``data:`` URLs become a placeholder that
  shows the URL as a link (a click is a navigation, not an automatic fetch); the live view adds a
  "Load image" button to it (``static/trace_view.js``).
- HTML outputs (:func:`safe_output_html`) are re-serialised from a parse: every attribute, element
  and CSS reference that would load something from outside is removed (remote ``<img>`` become the
  same placeholder), and what is left is emitted in a canonical form (escaped text, quoted
  attributes, no comments), so the browser parses the output exactly as this module did, whatever
  the input's parser tricks. The result goes into an ``<iframe sandbox>`` whose ``srcdoc`` starts
  with a Content-Security-Policy (:data:`OUTPUT_CSP`) that blocks every load but ``data:``, in case
  anything got through.

``data:`` images stay inline (they carry their own bytes: nothing leaves the machine).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

#: The policy at the top of every sandboxed HTML output's ``srcdoc``.
OUTPUT_CSP = (
    "default-src 'none'; img-src data:; media-src data:; font-src data:; "
    "style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"
)
CSP_META = (
    f'<meta http-equiv="Content-Security-Policy" content="{OUTPUT_CSP}">'
    '<meta http-equiv="x-dns-prefetch-control" content="off">'
    '<meta name="referrer" content="no-referrer">'
    "<style>.k2lab-remote{border:1px dashed #999;border-radius:3px;padding:1px 4px;"
    "font:12px sans-serif;color:#555}</style>"
)

# elements dropped with their content (nothing in them is shown in a script-less sandbox)
_DROP_WITH_CONTENT = {"script"}
# elements dropped, their children kept (frames, plugins, document-level loaders)
_DROP_TAG = {
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "portal",
    "fencedframe",
    "link",
    "meta",
    "base",
    "param",
}
# attributes whose value is fetched when present (unless it is a data: URL)
_FETCHED = {"src", "poster", "background", "lowsrc", "dynsrc"}
_SRCSET = {"srcset", "imagesrcset"}
# attributes that load or phone home and have no use here
_ALWAYS_DROP = {"data", "codebase", "archive", "classid", "manifest", "ping", "icon", "profile"}
_NAVIGATION = {"a", "area"}  # href on these is a link: fetched only on a click
_NAME_OK = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*\Z")
_ATTR_OK = re.compile(r"[a-zA-Z_:][-a-zA-Z0-9_:.]*\Z")
_URL_FN = re.compile(r"url\(\s*(?:\"([^\"]*)\"|'([^']*)'|([^)'\"]*?))\s*\)", re.I)
_CSS_LOADERS = re.compile(r"(image-set|image|src|cross-fade|element|paint)\s*\(|@import", re.I)
_C0_SPACE = "".join(map(chr, range(0x21)))  # what URL parsing strips at both ends
_CSS_COMMENT = re.compile(r"/\*.*?(\*/|\Z)", re.S)


def is_inline(url: str) -> bool:
    """A ``data:`` URL (after the whitespace a browser ignores): loading it fetches nothing."""
    u = re.sub(r"[\t\n\r]", "", url).strip(_C0_SPACE)
    return u[:5].lower() == "data:"


def remote_link(url: str, label: str = "") -> str:
    """A link to ``url`` (a navigation, only on a click) showing the URL."""
    u = html.escape(url, quote=True)
    return (
        f'<a class="k2lab-remote-url" href="{u}" target="_blank" '
        f'rel="noopener noreferrer nofollow">{html.escape(label or url)}</a>'
    )


def image_placeholder(url: str, alt: str = "") -> str:
    """What stands for a remote image: the URL as a link; the live view adds a Load button."""
    return (
        f'<span class="k2lab-remote" data-k2lab-url="{html.escape(url, quote=True)}" '
        f'data-k2lab-alt="{html.escape(alt, quote=True)}">'
        '<span class="k2lab-remote-label">Remote image not loaded: </span>'
        f"{remote_link(url)}</span>"
    )


def safe_css(css: str, found: list[str]) -> str | None:
    """CSS with every ``url()`` that is not ``data:`` replaced by ``none``; ``None`` if it has
    constructs that could load something in ways not worth parsing (escapes, ``@import``,
    ``image-set()``...) or markup (``<``, which a ``<style>`` inside SVG would parse)."""
    css = _CSS_COMMENT.sub(" ", css).replace("\x00", "")
    if "\\" in css or "<" in css:
        return None

    def url(m: re.Match[str]) -> str:
        value = next(g for g in m.groups() if g is not None)
        if is_inline(value):
            return m.group(0)
        found.append(value.strip())
        return "none"

    css = _URL_FN.sub(url, css)
    probe = _URL_FN.sub("", css)  # what is left once the kept data: urls are out of the way
    if _CSS_LOADERS.search(probe) or re.search(r"url\s*\(", probe, re.I):
        return None
    return css


def _srcset_inline(value: str) -> bool:
    """A srcset of a single data: candidate (``data:... 2x``); anything else is dropped."""
    return (
        is_inline(value) and re.fullmatch(r"\s*data:\S*(\s+\d+(\.\d+)?[wx])?\s*", value) is not None
    )


class _Rewriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.found: list[str] = []  # remote references removed (not images: those get placeholders)
        self.images: list[str] = []
        self.skip = 0  # inside a dropped-with-content element
        self.style = False  # inside <style>
        self.css: list[str] = []  # its text, checked as a whole at its end

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, close=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, close=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], close: bool) -> None:
        if self.skip:
            if tag in _DROP_WITH_CONTENT and not close:
                self.skip += 1
            return
        if tag in _DROP_WITH_CONTENT:
            self.skip = 0 if close else 1
            return
        if not _NAME_OK.match(tag):
            return
        if tag in _DROP_TAG:
            for name, value in attrs:
                if name in ("src", "href", "data") and value and not is_inline(value):
                    self.found.append(value.strip())
            return
        kept: list[tuple[str, str]] = []
        remote_src = remote_srcset = ""
        for name, value in attrs:
            value = (value or "").replace("\x00", "")
            if not _ATTR_OK.match(name) or name.startswith("on") or name.startswith("data-k2lab"):
                continue
            if name == "class":
                value = " ".join(c for c in value.split() if not c.startswith("k2lab-remote"))
            elif name in _ALWAYS_DROP:
                continue
            elif name in _FETCHED:
                if value.strip() and not is_inline(value):
                    if tag == "img" and name == "src":
                        remote_src = value.strip()
                    else:
                        self.found.append(value.strip())
                    continue
            elif name in _SRCSET:
                if value.strip() and not _srcset_inline(value):
                    if tag == "img":
                        remote_srcset = value.strip().split()[0]
                    else:
                        self.found.append(value.strip().split()[0])
                    continue
            elif name in ("href", "xlink:href"):
                v = value.strip()
                link = tag in _NAVIGATION or v.startswith("#") or not v
                if not (link or (tag in ("image", "feimage") and is_inline(v))):
                    self.found.append(v)
                    continue
            elif name == "style":
                css = safe_css(value, self.found)
                if css is None:
                    continue
                value = css
            kept.append((name, value))
        if remote_srcset:
            if remote_src or any(n == "src" and v.strip() for n, v in kept):
                self.found.append(remote_srcset)  # the img still shows its own (data:) source
            else:
                remote_src = remote_srcset  # nothing left to show: a placeholder
        if remote_src:
            alt = next((v for n, v in kept if n == "alt"), "")
            self.images.append(remote_src)
            self.out.append(image_placeholder(remote_src, alt))
            return
        attr_text = "".join(f' {n}="{html.escape(v, quote=True)}"' for n, v in kept)
        self.out.append(f"<{tag}{attr_text}{' /' if close else ''}>")
        if tag == "style" and not close:
            self.style = True

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in _DROP_WITH_CONTENT:
                self.skip -= 1
            return
        if tag == "style":
            self.end_style()
        if _NAME_OK.match(tag) and tag not in _DROP_TAG and tag not in _DROP_WITH_CONTENT:
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.style:
            self.css.append(data)
            return
        self.out.append(html.escape(data.replace("\x00", ""), quote=False))

    def end_style(self) -> None:
        if self.style:
            css = safe_css("".join(self.css), self.found)
            if css is not None:
                self.out.append(css)
        self.style = False
        self.css = []

    # comments, doctypes, processing instructions, CDATA: dropped (never echoed verbatim)
    def handle_comment(self, data: str) -> None:
        pass

    def handle_decl(self, decl: str) -> None:
        pass

    def handle_pi(self, data: str) -> None:
        pass

    def unknown_decl(self, data: str) -> None:
        pass


def safe_output_html(source: str) -> tuple[str, list[str], list[str]]:
    """``(html, images, others)``: ``source`` without anything that loads from outside (remote
    images replaced by placeholders), plus the remote image URLs and the other remote references
    that were removed."""
    p = _Rewriter()
    p.feed(source)
    p.close()
    if p.style:
        p.end_style()
        p.out.append("</style>")
    return "".join(p.out), p.images, p.found
