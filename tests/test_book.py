"""Cheap checks of the book's configuration, its built HTML and the outputs stored in notebooks."""

import json
import re
from pathlib import Path

import jupyter_book
import pytest
import yaml
from test_browser import HTML_DIR, ROOT, toc_pages

LOCAL_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/[^/\s]+/|/Users/[^/\s]+/)")
EXTERNAL_SRC = re.compile(r"<(?:script|img|iframe)\b[^>]*\bsrc=[\"'](?:https?:)?//", re.IGNORECASE)
EXTERNAL_STYLESHEET = re.compile(
    r"<link\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']*[\"'][^>]*stylesheet"
    r"|<link\b[^>]*stylesheet[^>]*\bhref=[\"'](?:https?:)?//",
    re.IGNORECASE,
)


def built(page: str) -> Path:
    """The HTML file of a document; fails with the command to run when the book is not built."""
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(f"no built book in {HTML_DIR}: run `make build` first")
    return HTML_DIR / f"{page}.html"


def stored_text(notebook: Path) -> list[str]:
    """Every text a notebook stores in its outputs (images left out: base64 is not text)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    texts = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            texts += [output.get("text", ""), output.get("evalue", "")] + output.get("traceback", [])
            for mime, data in output.get("data", {}).items():
                if not mime.startswith("image/"):
                    texts.append(data if isinstance(data, str) else json.dumps(data))
    return ["".join(t) if isinstance(t, list) else str(t) for t in texts]


@pytest.mark.parametrize("page", toc_pages())
def test_every_toc_entry_has_a_source_and_an_html_page(page: str) -> None:
    sources = [ROOT / f"{page}{suffix}" for suffix in (".md", ".ipynb")]
    assert any(s.is_file() for s in sources), f"{page} is in _toc.yml but has no .md or .ipynb"
    assert built(page).is_file(), f"{page} has no HTML page: run `make build`"


def test_the_book_is_built_with_jupyter_book_1() -> None:
    assert jupyter_book.__version__.startswith("1."), jupyter_book.__version__
    built("book/index")
    assert (HTML_DIR / ".buildinfo").is_file(), "_build/html is not a Sphinx (Jupyter Book 1) build"


def test_the_book_shows_stored_outputs_and_only_pages_of_the_toc() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True


@pytest.mark.parametrize("page", toc_pages())
def test_pages_load_nothing_from_other_hosts(page: str) -> None:
    html = built(page).read_text(encoding="utf-8")
    assert not EXTERNAL_SRC.search(html), EXTERNAL_SRC.search(html).group(0)
    assert not EXTERNAL_STYLESHEET.search(html), EXTERNAL_STYLESHEET.search(html).group(0)


def test_math_is_served_by_the_book_itself() -> None:
    built("book/index")
    assert (HTML_DIR / "_static" / "mathjax" / "tex-chtml.js").is_file()


@pytest.mark.parametrize(
    "notebook",
    sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "chapters").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    ),
)
def test_stored_outputs_leak_no_local_path(notebook: str) -> None:
    leaks = [m.group(0) for t in stored_text(ROOT / notebook) for m in LOCAL_PATH.finditer(t)]
    assert not leaks, f"{notebook} stores local paths in its outputs: {sorted(set(leaks))}"
