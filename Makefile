# Two commands matter: `make book` builds the HTML book, `make test` runs every check.
# Both create .venv and install the exact versions in requirements.lock first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(shell find chapters -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
# Seeds besides the default under which every notebook's closing claims must also hold.
OTHER_SEEDS ?= 1 2
PYTEST_NB := PYTHONPATH=tests $(BIN)/python -m pytest -p nbtiming -p nbportable -n 2 --dist loadfile
export OMP_NUM_THREADS := 1

.PHONY: setup book test lint workflows anatomy freshness unit nbval seeds build browser lab notebooks calibrate calibration-page bench leaderboard payoff lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

book: setup build
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"

# The repository that holds the book, in one place: with it, every page links to its source file
# there (the publishing workflow sets it to the repository it runs in); without it, no source links.
REPOSITORY_URL ?=
BOOK_CONFIG := _build/config/_config.yml

build: setup
	$(BIN)/python -m dyn_helpers.tools.book_config $(BOOK_CONFIG) --repository "$(REPOSITORY_URL)"
	$(BIN)/jupyter-book build --warningiserror --nitpick --keep-going --builder html --config $(BOOK_CONFIG) .

test: setup lint workflows anatomy freshness unit nbval seeds build browser
	@echo "All checks passed."

lint: setup
	$(BIN)/ruff check dyn_helpers tests chapters book/templates
	$(BIN)/ruff format --check dyn_helpers tests
	$(BIN)/ruff format --check --line-length 88 chapters book/templates

# The GitHub Actions workflow that tests and publishes the book, checked offline: against the
# GitHub-workflow schema, and by zizmor's security audits (pinned actions, least permissions).
workflows: setup
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows/

# Every notebook has the book's anatomy (book/adding_a_chapter.md), and so does a chapter made from
# book/templates/chapter.ipynb, which is also run (seconds).
anatomy: setup
	$(BIN)/python -m pytest tests/test_anatomy.py

# In seconds: stored outputs belong to the current code; every claim is calibrated with its margin.
freshness: setup
	$(BIN)/python -m pytest tests/test_freshness.py

unit: setup
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 tests/unit

# Every cell's output against the committed one: strictly on the platform that stored them,
# elsewhere within tolerances calibrated over seeds (tests/nbportable.py says which, and what differed).
nbval: setup
	$(PYTEST_NB) --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg $(NOTEBOOKS)

# The closing assertions of every notebook, re-run under other seeds (outputs not compared).
seeds: setup
	for seed in $(OTHER_SEEDS); do \
	  DYN_HELPERS_SEED=$$seed $(PYTEST_NB) --nbval-lax $(NOTEBOOKS) || exit 1; \
	done

browser: setup
	$(BIN)/python -m pytest tests/test_browser.py tests/test_book.py

lab: setup
	$(BIN)/jupyter lab chapters

# Re-execute every notebook in place, two at a time, storing its outputs and fingerprints; regenerate
# the status and calibration pages.
notebooks: setup
	$(BIN)/python -m dyn_helpers.tools.runs --jobs 2 $(NOTEBOOKS)
	$(BIN)/python -m dyn_helpers.tools.calibrate --page

# Run each notebook under 12 base seeds and a second numeric setting (about six minutes a notebook,
# two to three hours for the whole book on 2 cores); writes book/results/calibration/ and
# book/calibration.md.
calibrate: setup
	$(BIN)/python -m dyn_helpers.tools.calibrate $(NOTEBOOKS)

calibration-page: setup
	$(BIN)/python -m dyn_helpers.tools.calibrate --page

# The timing suite: times every registered case on the device at hand (CUDA when available, else the
# CPU) and writes its record to book/results/; chapter 7 reads the CPU record (theory_vs_practice).
bench: setup
	$(BIN)/python -m dyn_helpers.tools.bench

# The leaderboard's multi-seed records (book/results/leaderboard/): every stale entry retrained under
# its seeds, then every entry timed on the CPU; about forty minutes. Run on a quiet machine.
leaderboard: setup
	$(BIN)/python -m dyn_helpers.tools.leaderboard

# The "when dynamic networks pay" sweeps (book/results/payoff/): every stale family's record remade.
payoff: setup
	$(BIN)/python -m dyn_helpers.tools.payoff

lock:
	head -n 2 requirements.lock > requirements.lock.new
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/+cpu//' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf _build
