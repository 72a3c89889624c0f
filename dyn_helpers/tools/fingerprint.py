"""Fingerprints of what produced a notebook's stored outputs: the code, and the platform.

The *code fingerprint* hashes a notebook's code cells, the sources of every `dyn_helpers` module
the notebook imports (directly or through other modules), `requirements.lock` and the seed.
`make notebooks` stores it in the notebook's metadata; `make test` recomputes it in seconds and
fails when it differs, so stored outputs that no longer belong to the code cannot pass unnoticed.

The *platform fingerprint* names what is known to move floating-point results: the CPU model,
the CPU capability torch dispatches to, the torch version and the environment variables that
select kernels. Where it matches the stored one, outputs are compared strictly; elsewhere with
the tolerances of `dyn_helpers.tools.tolerance`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat

from dyn_helpers.devices import cpu_model_name
from dyn_helpers.repro import default_seed

PACKAGE = "dyn_helpers"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
LOCK_FILE = REPO_ROOT / "requirements.lock"
METADATA_KEY = "dyn_helpers"
# Environment variables that change which CPU kernels run, and so the last digits of training.
NUMERIC_ENV_VARS = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
)


def _imported_modules(source: str, package_dir: Path) -> set[str]:
    """Dotted names, relative to the package, of the `dyn_helpers` modules that `source` imports.

    `dyn_helpers.sample_wise.gates` gives 'sample_wise.gates' and 'sample_wise.__init__' (importing
    a module runs its package's `__init__`); `from dyn_helpers import plot` gives 'plot'.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != PACKAGE:
                continue
            for k in range(1, len(parts)):
                prefix = parts[1 : k + 1]
                if (package_dir.joinpath(*prefix) / "__init__.py").is_file():
                    found.add(".".join([*prefix, "__init__"]))
                elif package_dir.joinpath(*prefix).with_suffix(".py").is_file():
                    found.add(".".join(prefix))
                    break
    return found


def module_file(name: str, package_dir: Path | None = None) -> Path:
    """The source file of the package module with dotted relative name `name` ('sample_wise.gates')."""
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    return package_dir.joinpath(*name.split(".")).with_suffix(".py")


def helper_modules(sources: Iterable[str], package_dir: Path | None = None) -> list[str]:
    """The `dyn_helpers` modules that `sources` use, with everything those import, sorted.

    The package's `__init__` is always included: importing any module runs it.
    """
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    todo: set[str] = set()
    for source in sources:
        if not isinstance(source, str):
            raise TypeError(f"expected source code as str, got {type(source).__name__}")
        todo |= _imported_modules(source, package_dir)
    seen = {"__init__"}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= _imported_modules(module_file(name, package_dir).read_text(encoding="utf-8"), package_dir)
    return sorted(seen)


def code_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The sources of a notebook's code cells, in order."""
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def code_fingerprint(nb: nbformat.NotebookNode, seed: int | None = None) -> str:
    """SHA-256 over the notebook's code cells, the helper modules it uses, the lock file and the seed."""
    if not isinstance(nb, nbformat.NotebookNode):
        raise TypeError(f"expected an nbformat.NotebookNode, got {type(nb).__name__}")
    sources = code_cells(nb)
    digest = hashlib.sha256()

    def add(label: str, text: str) -> None:
        data = text.encode("utf-8")
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for index, source in enumerate(sources):
        add(f"cell {index}", source)
    for module in helper_modules(sources):
        add(f"module {module}", module_file(module).read_text(encoding="utf-8"))
    add("requirements.lock", LOCK_FILE.read_text(encoding="utf-8"))
    add("seed", str(default_seed() if seed is None else seed))
    return digest.hexdigest()


def platform_fingerprint(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """CPU model, torch's CPU capability, torch version and the kernel-selecting environment variables."""
    import torch

    environ = os.environ if environ is None else environ
    return {
        "cpu": cpu_model_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "env": {name: environ[name] for name in NUMERIC_ENV_VARS if environ.get(name)},
    }


def stored(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """What `make notebooks` stored in the notebook's metadata (empty if it never ran)."""
    return dict(nb.metadata.get(METADATA_KEY, {}))


def stamp(nb: nbformat.NotebookNode, seed: int | None = None) -> dict[str, Any]:
    """Store the code and platform fingerprints in the notebook's metadata; return them."""
    record = {
        "code_fingerprint": code_fingerprint(nb, seed),
        "seed": default_seed() if seed is None else seed,
        "platform": platform_fingerprint(),
    }
    nb.metadata[METADATA_KEY] = record
    return record


def same_platform(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two platform fingerprints are equal (the strict comparison applies)."""
    return json.dumps(dict(a), sort_keys=True) == json.dumps(dict(b), sort_keys=True)
