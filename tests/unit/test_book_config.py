"""The configuration the book is built with: source links only once a repository is named."""

import pytest
import yaml

from dyn_helpers.tools import book_config


def test_without_a_repository_the_configuration_is_the_books_own():
    config = {"title": "t", "html": {"use_repository_button": False}}
    assert book_config.with_repository(config, "") == config


def test_with_a_repository_every_page_links_to_it_and_to_its_source_file():
    config = book_config.with_repository(
        {"title": "t", "html": {"use_repository_button": False}}, "https://github.com/o/b/"
    )
    assert config["repository"] == {"url": "https://github.com/o/b", "branch": "main", "path_to_book": ""}
    assert config["html"]["use_repository_button"] is True
    assert config["sphinx"]["config"]["html_theme_options"]["use_source_button"] is True


def test_an_address_that_is_not_a_repository_is_refused():
    with pytest.raises(ValueError, match="owner/name"):
        book_config.with_repository({}, "github.com/o")


def test_the_written_file_keeps_every_key_of_config_yml(tmp_path):
    out = tmp_path / "c.yml"
    book_config.main([str(out), "--repository", "https://github.com/o/b"])
    written = yaml.safe_load(out.read_text(encoding="utf-8"))
    original = yaml.safe_load(book_config.CONFIG.read_text(encoding="utf-8"))
    assert set(original) <= set(written)
    assert written["sphinx"]["config"]["extensions"] == original["sphinx"]["config"]["extensions"]
