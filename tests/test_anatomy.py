"""Every chapter notebook has the book's anatomy, and so does a chapter made from the template.

The anatomy (book/adding_a_chapter.md describes it): a title, the survey section the page follows
and what the reader will be able to do; the boxes Key ideas, Prerequisites and Symbols before the
first code cell; then "What we found", stated against the static baseline, "Claims, checked",
ending with the claims cell, and exercises whose solutions sit in dropdowns.

These checks read files only, except one test that runs the template (seconds).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dyn_helpers.claims import CLAIMS_LOG_ENV_VAR, Claim
from dyn_helpers.tools import runs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "book" / "templates" / "chapter.ipynb"
CHAPTERS = sorted((ROOT / "chapters").glob("*/*.ipynb"))
API_PAGE = ROOT / "book" / "api.md"
TEMPLATE_TIMEOUT_S = 120

# Anatomy checks that a notebook is known to fail, each with the reason. Every entry must still be
# a gap (test_each_known_gap_is_still_a_gap): once the notebook is fixed, remove its entry.
KNOWN_GAPS: dict[str, dict[str, str]] = {}

SURVEY_SECTION = re.compile(r"^\*Survey section \d", re.MULTILINE)
OUTCOME = "After this notebook you will be able to"
BOXES = ("Key ideas", "Prerequisites", "Symbols")
SECTIONS = ("What we found", "Claims, checked", "Exercises")
# A section a page may have, in its place among the required ones: statements over seeds, read
# from the multi-seed record after the claims cell.
SECTION_ORDER = ("What we found", "Claims, checked", "Across seeds", "Exercises")
FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<argument>.*?)\s*$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)\s*$")
HEADING = re.compile(r"^(?P<level>#{1,6})[ \t]+(?P<text>.+?)\s*$")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
TABLE_RULE = re.compile(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$")
STATIC = re.compile(r"\bstatic\b", re.IGNORECASE)
NO_STATIC = re.compile(r"\bno static (baseline|model|network)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Directive:
    """A top-level MyST directive in a markdown cell: ```{name} argument, its options and content."""

    cell: int
    name: str
    argument: str
    options: dict[str, str]
    content: str


@dataclass(frozen=True)
class Heading:
    cell: int
    level: int
    text: str


@dataclass
class Notebook:
    """A notebook's cells, read as the anatomy checks need them."""

    key: str
    path: Path
    cells: list[dict] = field(repr=False)

    @classmethod
    def read(cls, path: Path, root: Path = ROOT) -> Notebook:
        nb = json.loads(path.read_text(encoding="utf-8"))
        return cls(path.relative_to(root).as_posix(), path, nb["cells"])

    def source(self, index: int) -> str:
        source = self.cells[index]["source"]
        return "".join(source) if isinstance(source, list) else source

    def indices(self, cell_type: str) -> list[int]:
        return [i for i, cell in enumerate(self.cells) if cell["cell_type"] == cell_type]

    @property
    def first_code(self) -> int:
        code = self.indices("code")
        return code[0] if code else len(self.cells)

    def headings(self) -> list[Heading]:
        return [
            Heading(i, len(m["level"]), m["text"])
            for i in self.indices("markdown")
            for m in map(HEADING.match, self.source(i).splitlines())
            if m
        ]

    def directives(self, name: str | None = None) -> list[Directive]:
        found = [d for i in self.indices("markdown") for d in parse_directives(i, self.source(i))]
        return [d for d in found if name is None or d.name == name]

    def section(self, title: str) -> str:
        """The markdown under the level-2 heading `title`, up to the next heading of level 1 or 2."""
        text, inside = [], False
        for i in self.indices("markdown"):
            for line in self.source(i).splitlines():
                heading = HEADING.match(line)
                if heading and len(heading["level"]) <= 2:
                    inside = len(heading["level"]) == 2 and heading["text"] == title
                    continue
                if inside:
                    text.append(line)
        return "\n".join(text)


def parse_directives(cell: int, markdown: str) -> list[Directive]:
    """The top-level fenced directives of one markdown cell (a fence closes at its own kind and length)."""
    lines, found, i = markdown.splitlines(), [], 0
    while i < len(lines):
        opening = FENCE_OPEN.match(lines[i])
        i += 1
        if not opening:
            continue
        fence = opening["fence"]
        body = []
        while i < len(lines):
            line = lines[i].strip()
            i += 1
            if len(line) >= len(fence) and set(line) == {fence[0]}:
                break
            body.append(lines[i - 1])
        options = {}
        while body and (option := OPTION.match(body[0])):
            options[option["key"]] = option["value"]
            body.pop(0)
        found.append(Directive(cell, opening["name"], opening["argument"], options, "\n".join(body)))
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())


# The checks: each returns what is wrong with a notebook, nothing when it has that part of the anatomy.
CHECKS: dict[str, Callable[[Notebook], list[str]]] = {}


def check(fn: Callable[[Notebook], list[str]]) -> Callable[[Notebook], list[str]]:
    CHECKS[fn.__name__] = fn
    return fn


@check
def title_problems(nb: Notebook) -> list[str]:
    if not nb.cells or nb.cells[0]["cell_type"] != "markdown":
        return ["cell 0 must be a markdown cell that opens with the title"]
    first = nb.source(0).lstrip().splitlines()[:1]
    if not first or not re.match(r"^# \S", first[0]):
        return [f"cell 0 must start with '# <Title>', got {first[0][:60] if first else ''!r}"]
    return []


@check
def survey_section_problems(nb: Notebook) -> list[str]:
    if not nb.cells or not SURVEY_SECTION.search(nb.source(0)):
        return ["cell 0 needs a line in italics naming the survey section: '*Survey section 2.1.1, ...*'"]
    return []


@check
def outcome_problems(nb: Notebook) -> list[str]:
    if not nb.cells or OUTCOME not in _one_line(nb.source(0)):
        return [f"cell 0 needs a sentence saying what the reader will be able to do: '{OUTCOME} ...'"]
    return []


@check
def box_order_problems(nb: Notebook) -> list[str]:
    boxes = [d for d in nb.directives("admonition") if d.argument in BOXES]
    titles = [d.argument for d in boxes]
    if titles != list(BOXES):
        return [f"needs the admonitions {', '.join(BOXES)} once each and in this order, found {titles}"]
    late = [d.argument for d in boxes if d.cell > nb.first_code]
    if late:
        return [f"the admonitions {late} must come before the first code cell (cell {nb.first_code})"]
    return []


def _box(nb: Notebook, title: str) -> Directive | None:
    return next((d for d in nb.directives("admonition") if d.argument == title), None)


@check
def key_ideas_problems(nb: Notebook) -> list[str]:
    box = _box(nb, "Key ideas")
    if box is None:
        return ["no 'Key ideas' admonition"]
    bullets = [line for line in box.content.splitlines() if line.startswith("- ")]
    if len(bullets) != 3:
        return [f"'Key ideas' must hold exactly three top-level bullets ('- '), found {len(bullets)}"]
    return []


@check
def prerequisites_problems(nb: Notebook) -> list[str]:
    box = _box(nb, "Prerequisites")
    if box is None:
        return ["no 'Prerequisites' admonition"]
    targets = [m["target"] for m in LINK.finditer(box.content)]
    relative = [t for t in targets if "://" not in t and not t.startswith(("#", "/", "mailto:"))]
    if not relative:
        return ["'Prerequisites' must link (relative Markdown link) to a page this notebook builds on"]
    missing = [t for t in relative if not (nb.path.parent / t.split("#")[0]).is_file()]
    return [f"'Prerequisites' links to {t}, which does not exist" for t in dict.fromkeys(missing)]


@check
def symbols_problems(nb: Notebook) -> list[str]:
    box = _box(nb, "Symbols")
    if box is None:
        return ["no 'Symbols' admonition"]
    lines = box.content.splitlines()
    has_table = any(
        TABLE_ROW.match(head) and TABLE_RULE.match(rule) for head, rule in zip(lines, lines[1:], strict=False)
    )
    return [] if has_table else ["'Symbols' must hold a Markdown table (| Symbol | Meaning |)"]


def _section_headings(nb: Notebook) -> list[Heading]:
    return [h for h in nb.headings() if h.level == 2 and h.text in SECTION_ORDER]


@check
def section_order_problems(nb: Notebook) -> list[str]:
    found = [h.text for h in _section_headings(nb)]
    if found != [s for s in SECTION_ORDER if s in SECTIONS or s in found]:
        return [
            f"needs the headings {', '.join('## ' + s for s in SECTIONS)} once each and in order, found {found}"
        ]
    return []


@check
def what_we_found_problems(nb: Notebook) -> list[str]:
    text = nb.section("What we found")
    if not text.strip():
        return ["no '## What we found' section"]
    if not STATIC.search(text):
        return ["'What we found' must state the result against the static baseline (the word 'static')"]
    if NO_STATIC.search(text):
        return [f"'What we found' says there is {NO_STATIC.search(text)[0].lower()}: the page needs one"]
    return []


@check
def claims_cell_problems(nb: Notebook) -> list[str]:
    code = nb.indices("code")
    headings = {h.text: h.cell for h in _section_headings(nb)}
    across = headings.get("Across seeds")
    if across is not None:
        code, later = [i for i in code if i < across], [i for i in code if i > across]
        untagged = [i for i in later if "nbval-ignore-output" not in nb.cells[i]["metadata"].get("tags", [])]
        if untagged or not all("multi_seed(" in nb.source(i) for i in later):
            return [
                "the code cells under 'Across seeds' read the multi-seed record (multi_seed(...)) and are "
                "tagged nbval-ignore-output"
            ]
    if not code:
        return ["no code cell, so no claims cell"]
    if ".check()" not in nb.source(code[-1]):
        return [
            f"the last code cell (cell {code[-1]}) before any 'Across seeds' section must check the "
            "claims: claims.check()"
        ]
    if "Claims, checked" not in headings:
        return ["no '## Claims, checked' heading before the claims cell"]
    end = min(h for h in (across, headings.get("Exercises"), len(nb.cells)) if h is not None)
    if not headings["Claims, checked"] < code[-1] < end:
        return [f"the claims cell (cell {code[-1]}) must sit in the 'Claims, checked' section"]
    # A long list of claims may be split by theme over several cells of the section, prose between.
    section = [i for i in code if headings["Claims, checked"] < i <= code[-1]]
    if not any("Claims(" in nb.source(i) for i in section):
        return ["the 'Claims, checked' section makes its claims with Claims(...) before checking them"]
    if across is not None and not code[-1] < across < headings.get("Exercises", len(nb.cells)):
        return ["the 'Across seeds' section comes after 'Claims, checked' and before 'Exercises'"]
    return []


@check
def exercise_problems(nb: Notebook) -> list[str]:
    exercises, solutions = nb.directives("exercise"), nb.directives("solution")
    if not exercises:
        return ["no {exercise} under '## Exercises'"]
    dropdowns = {s.argument for s in solutions if "dropdown" in s.options.get("class", "").split()}
    problems = []
    for exercise in exercises:
        label = exercise.options.get("label")
        if not label:
            problems.append(f"an exercise in cell {exercise.cell} has no :label:")
        elif label not in dropdowns:
            problems.append(f"exercise {label!r} has no ```{{solution}} {label}``` with :class: dropdown")
    return problems


PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


@check
def solution_code_problems(nb: Notebook) -> list[str]:
    """Each solution holds code the reader can run: a ```python block that compiles (its directive
    fenced with four backticks, so that the block stays inside it)."""
    problems = []
    for solution in nb.directives("solution"):
        blocks = PYTHON_BLOCK.findall(solution.content)
        if not blocks:
            problems.append(
                f"solution {solution.argument!r} holds no ```python block inside ````{{solution}}````"
            )
        for code in blocks:
            try:
                compile(code, f"solution {solution.argument}", "exec")
            except SyntaxError as err:
                problems.append(
                    f"solution {solution.argument!r}: its code does not compile ({err.msg}, line {err.lineno})"
                )
    return problems


def _chapter_key(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def chapters_for(check_name: str) -> list:
    """Every chapter notebook, less those listed in KNOWN_GAPS for this check."""
    return [
        pytest.param(path, id=path.relative_to(ROOT / "chapters").with_suffix("").as_posix())
        for path in CHAPTERS
        if check_name not in KNOWN_GAPS.get(_chapter_key(path), {})
    ]


@functools.cache
def chapter(path: Path) -> Notebook:
    """A chapter notebook, read once per test session."""
    return Notebook.read(path)


def assert_holds(check_fn: Callable[[Notebook], list[str]], path: Path) -> None:
    nb = chapter(path)
    problems = check_fn(nb)
    assert not problems, f"{nb.key}: " + "; ".join(problems)


def test_there_are_chapters_to_check():
    assert CHAPTERS, "no notebooks under chapters/*/"


@pytest.mark.parametrize("path", chapters_for("title_problems"))
def test_opens_with_a_title(path):
    assert_holds(title_problems, path)


@pytest.mark.parametrize("path", chapters_for("survey_section_problems"))
def test_names_the_survey_section_it_follows(path):
    assert_holds(survey_section_problems, path)


@pytest.mark.parametrize("path", chapters_for("outcome_problems"))
def test_says_what_the_reader_will_be_able_to_do(path):
    assert_holds(outcome_problems, path)


@pytest.mark.parametrize("path", chapters_for("box_order_problems"))
def test_key_ideas_prerequisites_and_symbols_come_in_order_before_the_first_code_cell(path):
    assert_holds(box_order_problems, path)


@pytest.mark.parametrize("path", chapters_for("key_ideas_problems"))
def test_key_ideas_are_exactly_three_bullets(path):
    assert_holds(key_ideas_problems, path)


@pytest.mark.parametrize("path", chapters_for("prerequisites_problems"))
def test_prerequisites_link_to_pages_that_exist(path):
    assert_holds(prerequisites_problems, path)


@pytest.mark.parametrize("path", chapters_for("symbols_problems"))
def test_symbols_are_given_in_a_table(path):
    assert_holds(symbols_problems, path)


@pytest.mark.parametrize("path", chapters_for("section_order_problems"))
def test_what_we_found_claims_checked_and_exercises_come_in_order(path):
    assert_holds(section_order_problems, path)


@pytest.mark.parametrize("path", chapters_for("what_we_found_problems"))
def test_what_we_found_states_the_result_against_the_static_baseline(path):
    assert_holds(what_we_found_problems, path)


@pytest.mark.parametrize("path", chapters_for("claims_cell_problems"))
def test_claims_are_made_and_then_checked_by_the_last_code_cell_under_claims_checked(path):
    assert_holds(claims_cell_problems, path)


@pytest.mark.parametrize("path", chapters_for("exercise_problems"))
def test_every_exercise_has_a_dropdown_solution_with_its_label(path):
    assert_holds(exercise_problems, path)


@pytest.mark.parametrize("path", chapters_for("solution_code_problems"))
def test_every_solution_holds_python_code_that_compiles(path):
    assert_holds(solution_code_problems, path)


@pytest.mark.parametrize(
    ("key", "check_name"),
    [(key, name) for key, gaps in KNOWN_GAPS.items() for name in gaps],
    ids=lambda value: value.removeprefix("chapters/").removesuffix(".ipynb"),
)
def test_each_known_gap_is_still_a_gap(key, check_name):
    path = ROOT / key
    assert path.is_file(), f"KNOWN_GAPS lists {key}, which does not exist: remove its entry"
    assert check_name in CHECKS, f"KNOWN_GAPS lists an unknown check {check_name!r} for {key}"
    assert CHECKS[check_name](Notebook.read(path)), (
        f"{key} now passes {check_name}: remove it from KNOWN_GAPS in tests/test_anatomy.py"
    )


@pytest.fixture
def chapter_from_template(tmp_path) -> Notebook:
    """The template copied into a new part of a copy of the book, as an author would copy it.

    The book's other chapters and its book/ folder are linked in, so that relative links resolve
    as they would in chapters/.
    """
    root = tmp_path / "book-copy"
    (root / "chapters").mkdir(parents=True)
    for part in (ROOT / "chapters").iterdir():
        if part.is_dir():
            (root / "chapters" / part.name).symlink_to(part, target_is_directory=True)
    (root / "book").symlink_to(ROOT / "book", target_is_directory=True)
    new = root / "chapters" / "99_new_part" / "new_chapter.ipynb"
    new.parent.mkdir()
    shutil.copyfile(TEMPLATE, new)
    return Notebook.read(new, root)


@pytest.mark.parametrize("check_name", list(CHECKS))
def test_a_chapter_made_from_the_template_has_the_anatomy(check_name, chapter_from_template):
    problems = CHECKS[check_name](chapter_from_template)
    assert not problems, "book/templates/chapter.ipynb: " + "; ".join(problems)


def test_the_template_runs_without_error_and_its_claims_hold(tmp_path):
    notebook = tmp_path / TEMPLATE.name
    shutil.copyfile(TEMPLATE, notebook)
    nb = nbformat.read(notebook, as_version=4)
    log = tmp_path / "claims.jsonl"
    client = NotebookClient(
        nb,
        timeout=TEMPLATE_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=False,
    )
    client.execute(env=runs.kernel_env({"OMP_NUM_THREADS": "1", CLAIMS_LOG_ENV_VAR: str(log)}))
    errors = [
        out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors, f"the template raised: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    claims = [Claim(**json.loads(line)) for line in log.read_text(encoding="utf-8").splitlines()]
    assert claims, "the template's claims cell checked no claims"
    failed = [f"{c.key} ({c.text}): {c.value:.4f} vs {c.bound:.4f}" for c in claims if not c.holds]
    assert not failed, "claims of the template that do not hold: " + "; ".join(failed)


def test_the_api_page_documents_every_public_module():
    page = API_PAGE.read_text(encoding="utf-8")
    package = ROOT / "dyn_helpers"
    modules = sorted(
        ".".join(p.relative_to(package).with_suffix("").parts)
        for p in package.rglob("*.py")
        if not p.stem.startswith("_")
    )
    missing = [m for m in modules if f".. automodule:: dyn_helpers.{m}\n" not in page]
    assert not missing, (
        f"book/api.md has no `.. automodule::` for dyn_helpers.{', dyn_helpers.'.join(missing)}"
    )
