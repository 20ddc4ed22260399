"""Print the single-page build of the book (``jupyter-book build --builder singlehtml``) to
one PDF with headless Chromium (Debian's /usr/bin/chromium, driven by playwright: no browser
download), offline: every request that leaves file:// is refused.

    python -m scvae_core.book.bookpdf _build/singlehtml _build/pdf/book.pdf

``make pdf`` builds the single page and runs this.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# MathJax typesets after the page has loaded: print only once it is done (or absent).
MATH_READY = """async () => {
  for (let i = 0; i < 300 && document.querySelector('.math') && !(window.MathJax && MathJax.startup
       && MathJax.startup.promise); i++) await new Promise(r => setTimeout(r, 100));
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
}"""


PRINTED = "print.html"  # the page, copied to the site's root: its links are relative to the root
# A4 with these margins leaves 186 mm of line: 703 CSS px at 96 px per inch. The width check
# lays the page out at that width under print media, as Chromium does when it prints.
MARGIN_MM = {"top": 15, "bottom": 15, "left": 12, "right": 12}
LINE_PX = round((210 - MARGIN_MM["left"] - MARGIN_MM["right"]) / 25.4 * 96)
# What would be cut at the right edge of a printed page: a table, figure, image or equation
# wider than the line (nothing scrolls on paper).
TOO_WIDE_JS = """width => {
  const found = [];
  for (const el of document.querySelectorAll('main table, main figure, main img, main mjx-container')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > width + 1 || el.scrollWidth > el.clientWidth + 1 && el.tagName === 'TABLE'))
      found.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} spans ${Math.round(r.left)}..` +
                 `${Math.round(Math.max(r.right, r.left + el.scrollWidth))}px of a ${width}px line`);
  }
  return found;
}"""


def page_of(site: Path) -> Path:
    """The one content page of a singlehtml build (its index.html only redirects to it)."""
    pages = [p for p in site.rglob("*.html") if "_static" not in p.parts and p.name not in ("index.html", PRINTED)]
    if len(pages) != 1:
        raise SystemExit(f"error: {site} should hold one page besides index.html (a `jupyter-book build "
                         f"--builder singlehtml` output), found {len(pages)}: run `make pdf`")
    return pages[0]


def _printed_page(site: Path, browser, blocked: list[str], width: int):
    """The single page, loaded offline, images and maths done, under print media."""
    # Sphinx writes the root document (book/intro) where it lives but links it as if it were
    # at the root: load a copy that sits there.
    page_file = site / PRINTED
    page_file.write_text(page_of(site).read_text(encoding="utf-8"), encoding="utf-8")
    page = browser.new_page(viewport={"width": width, "height": 900})

    def route(r):
        if urlsplit(r.request.url).scheme in ("file", "data", "blob", "about"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=60_000)
    page.evaluate(MATH_READY)
    page.emulate_media(media="print")
    return page


def _with_page(site: Path, width: int, use):
    if not CHROMIUM.exists():
        raise SystemExit(f"error: {CHROMIUM} not found: `apt-get install -y --no-install-recommends chromium` "
                         "(`make pdf` does)")
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            result = use(_printed_page(site, browser, blocked, width))
        finally:
            browser.close()
    if blocked:
        raise SystemExit("error: the book asked for files outside it (it must print offline): " + ", ".join(blocked[:5]))
    return result


def print_pdf(site: Path, pdf: Path) -> Path:
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_suffix(".pdf.tmp")
    try:
        _with_page(site, 1280, lambda page: page.pdf(
            path=str(tmp), format="A4", print_background=True, outline=True,
            margin={k: f"{v}mm" for k, v in MARGIN_MM.items()}))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, pdf)  # atomic: a half-written PDF never replaces a good one
    return pdf


def too_wide(site: Path) -> list[str]:
    """Every table, figure, image or equation of the single page wider than a printed A4 line."""
    return _with_page(site, LINE_PX, lambda page: page.evaluate(TOO_WIDE_JS, LINE_PX))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scvae_core.book.bookpdf", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the singlehtml build, e.g. _build/singlehtml")
    parser.add_argument("pdf", type=Path, help="the PDF to write, e.g. _build/pdf/book.pdf")
    args = parser.parse_args(argv)
    print(f"book PDF: {print_pdf(args.site, args.pdf)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
