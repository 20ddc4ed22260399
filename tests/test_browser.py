"""Open every page of the built book from disk (file://) in a real browser, as a reader without
a network would, at a desktop width and at a phone's.

A page fails on: a parameter cell shown, a request that leaves file:// (MathJax, fonts and scripts must all be in the
site), a console or script error, an image that does not load, maths left as raw TeX, and a
table, figure or equation wider than the page (a wide table may scroll inside its own box,
div.scvae-scroll, as long as the page itself does not). Full-page screenshots of every page at
both widths are kept in _build/artifacts/<width>px/ for a person to look at.
"""
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scvae_core.book.bookcheck import pages
from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.book

BUILT = REPO_ROOT / "_build" / "html"
ARTIFACTS = REPO_ROOT / "_build" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {"desktop": 1280, "phone": 390}
LOCAL_SCHEMES = ("file", "data", "blob", "about")
# A known equation: eq. 4 of the paper (the Fisher information), labelled eq-fisher.
EQUATION_PAGE, EQUATION_ID = "notebooks/02_fisher_derivations.html", "equation-eq-fisher"

# The front page's answer: its table's height and whether anything in it is cut at the right.
FRONT_PAGE = "book/intro.html"
HEADLINE_JS = """() => {
  const t = document.querySelector('table#headline');
  if (!t) return null;
  const box = t.closest('.scvae-scroll') || t.parentElement;
  return {height: t.getBoundingClientRect().height, cut: t.scrollWidth > box.clientWidth + 1};
}"""

# Every table, figure and equation must fit the page. Only a table may scroll sideways, inside
# a box that fits (div.scvae-scroll for generated tables, the theme's for prose ones); a figure
# or an equation must fit as it is.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = el => { if (el.tagName !== 'TABLE') return false;
    for (let e = el.parentElement; e; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if ((o === 'auto' || o === 'scroll') && e.getBoundingClientRect().right <= width + 1) return true; }
    return false; };
  const found = [];
  if (document.documentElement.scrollWidth > width + 1)
    found.push(`the page is ${document.documentElement.scrollWidth}px wide in a ${width}px window`);
  for (const el of document.querySelectorAll('main table, main figure, main img, main mjx-container')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > width + 1 || r.left < -1) && !scrolls(el))
      found.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} spans ${Math.round(r.left)}..${Math.round(r.right)}px`);
  }
  return found;
}"""
# Maths is typeset when every .math element holds MathJax's output (mjx-container).
MATH_JS = """async () => {
  const maths = [...document.querySelectorAll('.math')];
  if (!maths.length) return {count: 0, raw: []};
  for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 100));
  if (!(window.MathJax && MathJax.startup)) return {count: maths.length, raw: ['MathJax did not load']};
  await MathJax.startup.promise;
  return {count: maths.length,
          raw: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60))};
}"""


@pytest.fixture(scope="module")
def built() -> Path:
    if not (BUILT / "index.html").is_file():
        pytest.fail(f"no built book in {BUILT}: run `make book` first (`make test` does)")
    return BUILT


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y --no-install-recommends chromium` (`make test` does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _is_local(url: str) -> bool:
    return urlsplit(url).scheme in LOCAL_SCHEMES


def _visit(page, path: Path) -> tuple[list[str], dict]:
    """Problems seen while loading ``path`` (console errors, script errors, failed requests,
    broken images, raw TeX), and what MathJax rendered."""
    problems = []
    page.on("console", lambda msg: problems.append(f"console error: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})")
            if _is_local(r.url) else None)
    if 'http-equiv="refresh"' in path.read_text(encoding="utf-8").lower():  # index.html: a redirect to the front page
        page.goto(path.as_uri())
        page.wait_for_url(lambda url: url != path.as_uri(), wait_until="load")
    else:
        page.goto(path.as_uri(), wait_until="load")
    # Lazy images load only when scrolled to: load them all, then wait until each is settled.
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15_000)
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                               ".map(i => i.currentSrc || i.src)")
    problems += [f"image not loaded: {src}" for src in broken]
    # Parameter cells are for papermill: neither ours nor papermill's injected copy is shown.
    params = page.evaluate("[...document.querySelectorAll('.tag_parameters, .tag_injected-parameters')]"
                           ".filter(c => c.getClientRects().length).length")
    problems += [f"{params} parameter cell(s) shown"] if params else []
    math = page.evaluate(MATH_JS)
    problems += [f"maths not rendered: {tex!r}" for tex in math["raw"]]
    return problems, math


@pytest.fixture(scope="module")
def visits(built, browser) -> dict[str, dict]:
    """Every page at every width: problems, overflow, maths; screenshots as a side effect."""
    outside = []  # every request that tried to leave file://, from any page

    def route(r):
        if _is_local(r.request.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    results = {}
    for label, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.route("**/*", route)
        try:
            for path in pages(built):
                name = path.relative_to(built).as_posix()
                page = context.new_page()
                before = len(outside)
                problems, math = _visit(page, path)
                problems += [f"request left file://: {url}" for url in outside[before:]]
                overflow = page.evaluate(OVERFLOW_JS)
                shot = ARTIFACTS / f"{width}px" / name.replace("/", "__").replace(".html", ".png")
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
                equation = page.evaluate(f"!!document.querySelector('#{EQUATION_ID} mjx-container')") \
                    if name == EQUATION_PAGE else None
                headline = page.evaluate(HEADLINE_JS) if name == FRONT_PAGE else None
                results[(label, name)] = {"problems": problems, "overflow": overflow, "math": math,
                                          "shot": shot, "equation": equation, "headline": headline}
                page.close()
        finally:
            context.close()
    return results


def _report(visits, key: str) -> str:
    return "\n".join(f"{name} at {WIDTHS[label]}px:\n  " + "\n  ".join(v[key])
                     for (label, name), v in visits.items() if v[key])


def test_every_page_loads_offline_and_cleanly(visits):
    assert visits, "no pages visited"
    assert not any(v["problems"] for v in visits.values()), _report(visits, "problems")


def test_known_equation_is_typeset(visits):
    for label in WIDTHS:
        v = visits.get((label, EQUATION_PAGE))
        assert v is not None, f"{EQUATION_PAGE} is not in the built book"
        assert v["math"]["count"] > 0 and v["equation"], \
            f"{EQUATION_PAGE} at {WIDTHS[label]}px: no MathJax output (mjx-container) in #{EQUATION_ID}"


def test_nothing_overflows_the_page(visits):
    assert not any(v["overflow"] for v in visits.values()), _report(visits, "overflow")


def test_screenshots_of_every_page_at_both_widths(visits):
    from PIL import Image

    for (label, name), v in visits.items():
        with Image.open(v["shot"]) as img:
            assert img.width == WIDTHS[label], f"{v['shot']}: {img.width}px wide, expected {WIDTHS[label]}"


def test_the_front_pages_answer_fits_one_screen_and_is_never_cut(visits):
    """At 1280 px the one-row-per-claim table is at most one 900 px screen tall; at 1280 and at
    390 px (a phone) nothing in it is cut at the right (it is read without scrolling sideways)."""
    for label, width in WIDTHS.items():
        found = visits.get((label, FRONT_PAGE), {}).get("headline")
        assert found is not None, f"{FRONT_PAGE} at {width}px: no table#headline"
        assert not found["cut"], f"{FRONT_PAGE} at {width}px: table#headline is cut at the right"
    assert visits[("desktop", FRONT_PAGE)]["headline"]["height"] <= 900, visits[("desktop", FRONT_PAGE)]["headline"]
