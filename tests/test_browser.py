"""The built book, read by a real browser: every page of `_toc.yml` loads cleanly.

Headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright) opens each page from a
local HTTP server and the test fails on console or page errors, images that did not load,
math that MathJax did not render, internal links or anchors that lead nowhere, and requests to
any host other than the local server. A full-page screenshot of each page is saved under
`_build/screenshots/`. Run `make build` first.
"""

from __future__ import annotations

import functools
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML_DIR = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
PAGE_TIMEOUT_MS = 30_000


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every document of the table of contents, root first, without its file extension."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    pages = [str(data["root"])]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(str(Path(entry["file"]).with_suffix("")))
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk(data.get("parts", []) + data.get("chapters", []))
    return pages


class _Quiet(SimpleHTTPRequestHandler):
    """A static file handler that does not log every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


@pytest.fixture(scope="session")
def base_url() -> Iterator[str]:
    """The built book, served over HTTP on a free local port."""
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(f"no built book in {HTML_DIR}: run `make build` first")
    handler = functools.partial(_Quiet, directory=str(HTML_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium; the test fails (it does not skip) where it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class _Ids(HTMLParser):
    """Collects the `id` and `name` attributes of an HTML page: the targets of its anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def fetch(url: str) -> tuple[int, frozenset[str]]:
    """HTTP status of a local URL and, for an HTML page, the ids it defines."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = response.status, response.read()
            is_html = response.headers.get_content_type() == "text/html"
    except urllib.error.HTTPError as err:
        return err.code, frozenset()
    ids = _Ids()
    if is_html:
        ids.feed(body.decode("utf-8", errors="replace"))
    return status, frozenset(ids.ids)


def link_problems(hrefs: list[str], base_url: str) -> list[str]:
    """Same-origin links whose page is not 200 or whose fragment names no id on that page."""
    problems = []
    for href in sorted(set(hrefs)):
        if not href.startswith(base_url):
            continue
        target, fragment = urldefrag(href)
        status, ids = fetch(target)
        if status != 200:
            problems.append(f"link to {target} returns HTTP {status}")
        elif fragment and unquote(fragment) not in ids:
            problems.append(f"link {href} names no element of {target}")
    return problems


# The page's text outside code, with math that MathJax rendered left out.
VISIBLE_TEXT_JS = """() => {
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .cell_input')
       .forEach(e => e.remove());
  return clone.textContent;
}"""

# Math the page source holds, and how much of it MathJax turned into output.
MATH_JS = """() => {
  const math = Array.from(document.querySelectorAll('.math, .amsmath'));
  return {
    math: math.length,
    unrendered: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80)),
  };
}"""

IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(i => { i.loading = 'eager'; });
  await Promise.all(images.map(i => i.complete ? null :
      new Promise(done => { i.addEventListener('load', done); i.addEventListener('error', done); })));
  return images.filter(i => i.naturalWidth === 0).map(i => i.currentSrc || i.src);
}"""

MATHJAX_READY_JS = """() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => true) : false"""


@pytest.mark.parametrize("page_name", toc_pages())
def test_page_renders_cleanly_in_a_browser(page_name: str, base_url: str, browser) -> None:
    """The page loads without errors, with its images, its math and its links intact."""
    html = HTML_DIR / f"{page_name}.html"
    assert html.is_file(), f"{html} is missing: run `make build`"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []

    def route(request_route) -> None:
        url = request_route.request.url
        host = urlsplit(url).hostname
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and host not in LOCAL_HOSTS:
            problems.append(f"request to a non-local host: {url}")
            request_route.abort()
        else:
            request_route.continue_()

    context.route("**/*", route)
    page.on(
        "console",
        lambda msg: problems.append(f"console error: {msg.text}") if msg.type == "error" else None,
    )
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None,
    )
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    try:
        page.goto(base_url + f"{page_name}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        page.evaluate(MATHJAX_READY_JS)
        problems += [f"image did not load: {src}" for src in page.evaluate(IMAGES_JS)]
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)

        math = page.evaluate(MATH_JS)
        if math["math"] and not math["containers"]:
            problems.append(f"{math['math']} math elements but no MathJax output")
        problems += [f"math not rendered: {text!r}" for text in math["unrendered"]]
        problems += [f"MathJax error: {text!r}" for text in math["errors"]]
        text = page.evaluate(VISIBLE_TEXT_JS)
        for delimiter in ("$$", "\\(", "\\)", "\\[", "\\]"):
            if delimiter in text:
                at = text.index(delimiter)
                problems.append(f"raw math delimiter {delimiter!r} in: {text[at - 40 : at + 40]!r}")

        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        problems += link_problems(hrefs, base_url)

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{page_name.replace('/', '__')}.png"), full_page=True)
    finally:
        context.close()
    assert not problems, f"{page_name}:\n  " + "\n  ".join(dict.fromkeys(problems))


LEADERBOARD = "chapters/08_leaderboard/leaderboard"
# The sort keys of one column of the first sortable table, in the order the rows are shown.
COLUMN_KEYS_JS = """(column) => Array.from(document.querySelector('table.sortable').tBodies[0].rows)
  .map(row => row.cells[column].getAttribute('data-sort'))"""


def test_the_leaderboard_table_sorts_by_a_column_when_its_header_is_clicked(base_url: str, browser) -> None:
    """A click on a header sorts the rows by that column, ascending, and a second click descending."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(base_url + f"{LEADERBOARD}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        headers = page.locator("table.sortable thead th")
        column = next(i for i in range(headers.count()) if headers.nth(i).inner_text().startswith("Counted"))
        button = headers.nth(column).locator("button.sort-button")
        button.click()
        keys = [float(k) for k in page.evaluate(COLUMN_KEYS_JS, column)]
        assert keys == sorted(keys) and len(keys) > 10
        assert headers.nth(column).get_attribute("aria-sort") == "ascending"
        button.click()
        keys = [float(k) for k in page.evaluate(COLUMN_KEYS_JS, column)]
        assert keys == sorted(keys, reverse=True)
        assert headers.nth(column).get_attribute("aria-sort") == "descending"
    finally:
        context.close()
