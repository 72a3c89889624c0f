"""Specification of `dyn_helpers.tools.fingerprint`: what a notebook's stored outputs depend on."""

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dyn_helpers import recorded
from dyn_helpers.tools import fingerprint


def notebook(*sources: str):
    return new_notebook(cells=[new_markdown_cell("# Title"), *(new_code_cell(s) for s in sources)])


def test_helper_modules_follow_imports_through_the_package() -> None:
    modules = fingerprint.helper_modules(
        ["from dyn_helpers.decisions.policy import PolicyNetwork\nimport numpy"]
    )
    assert {
        "__init__",
        "decisions.__init__",
        "decisions.policy",
        "sample_wise.gates",
        "layers",
        "measure",
    } <= set(modules)
    assert "sample_wise.moe" not in modules


def test_from_package_import_module_counts_as_importing_the_module() -> None:
    assert "plot" in fingerprint.helper_modules(["from dyn_helpers import plot, train"])


def test_the_code_fingerprint_changes_with_a_code_cell_and_the_seed_but_not_with_prose() -> None:
    nb = notebook("x = 1", "print(x)")
    base = fingerprint.code_fingerprint(nb, seed=0)
    assert fingerprint.code_fingerprint(nb, seed=1) != base
    nb.cells[0].source = "# Another title"
    assert fingerprint.code_fingerprint(nb, seed=0) == base
    nb.cells[2].source = "print(x + 1)"
    assert fingerprint.code_fingerprint(nb, seed=0) != base


def test_the_code_fingerprint_changes_with_an_imported_helper(tmp_path, monkeypatch) -> None:
    package = tmp_path / "dyn_helpers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from dyn_helpers.b import f\n")
    (package / "b.py").write_text("def f():\n    return 1\n")
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", package)
    nb = notebook("from dyn_helpers.a import f")
    before = fingerprint.code_fingerprint(nb, seed=0)
    (package / "b.py").write_text("def f():\n    return 2\n")
    assert fingerprint.code_fingerprint(nb, seed=0) != before


def test_the_platform_names_cpu_capability_torch_and_kernel_variables() -> None:
    platform = fingerprint.platform_fingerprint({"ATEN_CPU_CAPABILITY": "avx2", "HOME": "/root"})
    assert set(platform) == {"cpu", "cpu_capability", "torch", "env"}
    assert platform["env"] == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert "ATEN_CPU_CAPABILITY=avx2" in recorded.describe_platform(platform)


def test_a_kernel_variable_makes_another_platform() -> None:
    here = fingerprint.platform_fingerprint({})
    assert fingerprint.same_platform(here, fingerprint.platform_fingerprint({}))
    assert not fingerprint.same_platform(here, fingerprint.platform_fingerprint({"MKL_CBWR": "COMPATIBLE"}))


def test_stamp_stores_both_fingerprints_in_the_metadata() -> None:
    nb = notebook("x = 1")
    record = fingerprint.stamp(nb, seed=0)
    assert fingerprint.stored(nb) == record
    assert record["code_fingerprint"] == fingerprint.code_fingerprint(nb, seed=0)


def test_a_code_fingerprint_needs_a_notebook() -> None:
    with pytest.raises(TypeError, match="NotebookNode"):
        fingerprint.code_fingerprint({"cells": []})  # type: ignore[arg-type]
