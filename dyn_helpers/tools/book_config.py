"""The configuration the book is built with: `_config.yml`, plus the source links once the repository
that holds the book is known.

`python -m dyn_helpers.tools.book_config OUT [--repository URL]` writes `_config.yml` to `OUT`;
with a repository address (`make book REPOSITORY_URL=https://github.com/owner/name`, which the
publishing workflow sets to the repository it runs in) every page also links to the repository
and to its own source file there. Without one the book has no such links: Jupyter Book 1 refuses
a repository button without an address.
"""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from dyn_helpers.recorded import REPO_ROOT

CONFIG = REPO_ROOT / "_config.yml"
_REPOSITORY = re.compile(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def with_repository(config: dict, url: str | None, branch: str = "main") -> dict:
    """`config` with the repository at `url` and its source links switched on (unchanged if `url` is empty)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (the parsed _config.yml), got {type(config).__name__}")
    config = copy.deepcopy(config)
    if not url:
        return config
    url = url.rstrip("/")
    if not _REPOSITORY.fullmatch(url):
        raise ValueError(f"the repository address must look like https://github.com/owner/name, got {url!r}")
    config["repository"] = {"url": url, "branch": branch, "path_to_book": ""}
    config.setdefault("html", {})["use_repository_button"] = True
    theme = config.setdefault("sphinx", {}).setdefault("config", {}).setdefault("html_theme_options", {})
    theme["use_source_button"] = True
    return config


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the configuration")
    parser.add_argument(
        "--repository", default="", help="the repository's address (https://github.com/owner/name)"
    )
    parser.add_argument("--branch", default="main", help="the branch the book is built from")
    args = parser.parse_args(argv)
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(
        with_repository(config, args.repository, args.branch), sort_keys=False, allow_unicode=True
    )
    args.out.write_text(
        f"# Written by python -m dyn_helpers.tools.book_config from _config.yml.\n{text}", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
