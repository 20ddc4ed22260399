"""Open every page of the built book in a real browser: no console or script errors, every
image loads. Keeps a full-page screenshot of the Table 1 page in _build/artifacts/table1.png.

Offline by design: every request that does not go to the local server is aborted, and only
failures of local resources count. The theme's own assets are local; MathJax is fetched from
its CDN (Sphinx's default) on pages with math, which render their TeX source when offline.
A remote <img> would fail here on purpose: the book's figures must be files in the book.
"""
import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from scvae_core.bookcheck import pages
from scvae_core.results import REPO_ROOT

pytestmark = pytest.mark.book

BUILT = REPO_ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "_build" / "artifacts" / "table1.png"
TABLE1_PAGE = "notebooks/04_table1.html"
FALLBACK_PAGE = "book/intro.html"  # until the Table 1 page exists


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output for failures
        pass


@pytest.fixture(scope="module")
def server():
    if not (BUILT / "index.html").is_file():
        pytest.fail(f"no built book in {BUILT}: run `make book` first (`make test` does)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(BUILT)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y --no-install-recommends chromium` (`make test` does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _is_local(url: str, base: str) -> bool:
    return url.startswith(base) or urlsplit(url).scheme in ("data", "blob", "about")


def _visit(page, url: str, base: str) -> list[str]:
    """Problems seen while loading ``url``: console errors, script errors, failed local requests."""
    problems = []

    def on_console(msg):
        source = (msg.location or {}).get("url", "")
        if msg.type == "error" and (not source or _is_local(source, base)):
            problems.append(f"console error: {msg.text} ({source})")

    def on_response(response):
        if response.status >= 400 and _is_local(response.url, base):
            problems.append(f"HTTP {response.status}: {response.url}")

    def on_request_failed(request):
        if _is_local(request.url, base):
            problems.append(f"request failed: {request.url} ({request.failure})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)
    page.goto(url, wait_until="networkidle")
    # Lazy images load only when scrolled to: load them all, then wait until each is settled.
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=15_000)
    broken = page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
                                               ".map(i => i.currentSrc || i.src)")
    problems += [f"image not loaded: {src}" for src in broken]
    return problems


def test_every_page_loads_cleanly(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Offline: anything not served by the local server is aborted (see the module docstring).
    context.route("**/*", lambda route: route.continue_() if _is_local(route.request.url, server) else route.abort())
    shot = TABLE1_PAGE if (BUILT / TABLE1_PAGE).exists() else FALLBACK_PAGE
    failures = {}
    try:
        for path in pages(BUILT):
            name = path.relative_to(BUILT).as_posix()
            page = context.new_page()
            problems = _visit(page, server + name, server)
            if problems:
                failures[name] = problems
            if name == shot:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            page.close()
    finally:
        context.close()
    assert not failures, "\n".join(f"{page}:\n  " + "\n  ".join(p) for page, p in failures.items())
    assert SCREENSHOT.stat().st_size > 0
