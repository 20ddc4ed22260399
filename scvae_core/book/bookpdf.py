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


def page_of(site: Path) -> Path:
    """The one content page of a singlehtml build (its index.html only redirects to it)."""
    pages = [p for p in site.rglob("*.html") if "_static" not in p.parts and p.name not in ("index.html", PRINTED)]
    if len(pages) != 1:
        raise SystemExit(f"error: {site} should hold one page besides index.html (a `jupyter-book build "
                         f"--builder singlehtml` output), found {len(pages)}: run `make pdf`")
    return pages[0]


def print_pdf(site: Path, pdf: Path) -> Path:
    if not CHROMIUM.exists():
        raise SystemExit(f"error: {CHROMIUM} not found: `apt-get install -y --no-install-recommends chromium` "
                         "(`make pdf` does)")
    from playwright.sync_api import sync_playwright

    # Sphinx writes the root document (book/intro) where it lives but links it as if it were
    # at the root: print a copy that sits there.
    page_file = site / PRINTED
    page_file.write_text(page_of(site).read_text(encoding="utf-8"), encoding="utf-8")
    blocked = []
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_suffix(".pdf.tmp")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})

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
            page.pdf(path=str(tmp), format="A4", print_background=True, outline=True,
                     margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
        finally:
            browser.close()
    if blocked:
        tmp.unlink(missing_ok=True)
        raise SystemExit("error: the book asked for files outside it (it must print offline): " + ", ".join(blocked[:5]))
    os.replace(tmp, pdf)  # atomic: a half-written PDF never replaces a good one
    return pdf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scvae_core.book.bookpdf", description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the singlehtml build, e.g. _build/singlehtml")
    parser.add_argument("pdf", type=Path, help="the PDF to write, e.g. _build/pdf/book.pdf")
    args = parser.parse_args(argv)
    print(f"book PDF: {print_pdf(args.site, args.pdf)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
