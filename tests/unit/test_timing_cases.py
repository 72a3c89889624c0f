"""The GPU suite's timing cases: every chapter with a GPU section has some, and every case runs on the CPU."""

import json
from pathlib import Path

import pytest
import torch

from dyn_helpers.measure import TimingCase, registered_timing_cases
from dyn_helpers.outputs import ModelOutput, as_output

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"

TIMING_CASES = registered_timing_cases()


def _has_gpu_heading(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return any(
        line.lstrip().startswith("#") and "On a GPU" in line
        for cell in cells
        if cell["cell_type"] == "markdown"
        for line in "".join(cell["source"]).splitlines()
    )


GPU_CHAPTERS = sorted(p.stem for p in CHAPTERS.glob("*/*.ipynb") if _has_gpu_heading(p))


def test_gpu_chapters_are_found():
    assert "early_exiting" in GPU_CHAPTERS and len(GPU_CHAPTERS) >= 12


@pytest.mark.parametrize("chapter", GPU_CHAPTERS)
def test_every_chapter_with_a_gpu_section_has_cases(chapter):
    assert chapter in TIMING_CASES, (
        f"{chapter}.ipynb has an 'On a GPU' section but no registered timing cases"
    )


def _is_output(output: object) -> bool:
    return isinstance(output, torch.Tensor | ModelOutput)


@pytest.mark.parametrize("chapter", sorted(TIMING_CASES))
def test_cases_build_and_run_on_the_cpu(chapter):
    cases = TIMING_CASES[chapter](torch.device("cpu"))
    assert 1 <= len(cases) <= 8
    for name, case in cases.items():
        assert isinstance(case, TimingCase) and name.isidentifier() and name == name.lower(), name
        with torch.no_grad():
            for batch_size in case.batch_sizes:
                output = case.fn(case.inputs[:batch_size])
                assert _is_output(output), f"{chapter}/{name} at batch {batch_size} returned {type(output)}"


def _output(chapter: str, name: str) -> ModelOutput:
    case = TIMING_CASES[chapter](torch.device("cpu"))[name]
    with torch.no_grad():
        return as_output(case.fn(case.inputs[:32]))


@pytest.mark.parametrize("chapter", ["layer_skipping", "efficiency_losses", "blockdrop"])
def test_forced_paths_run_every_block_or_none(chapter):
    prefix = "policy" if chapter == "blockdrop" else "gated"
    assert bool((_output(chapter, f"{prefix}_all_blocks").executed == 1).all())
    assert bool((_output(chapter, f"{prefix}_no_blocks").executed == 0).all())


def test_act_halts_after_the_first_block_or_the_last():
    first, all_blocks = (
        _output("halting", n).decisions["steps"] for n in ("act_first_block", "act_all_blocks")
    )
    assert bool((first == 1).all()) and bool((all_blocks == 4).all())
