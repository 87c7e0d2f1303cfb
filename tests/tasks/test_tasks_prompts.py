"""Prompt builders: defaults per task, options, overrides, and LaTeX-safe substitution."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sparta_hpc.tasks import prompts
from sparta_hpc.tasks.prompts import (
    RAW_TEMPLATE,
    TEMPLATES,
    build_prompt,
    format_choices,
    render,
    template_for,
)
from sparta_hpc.tasks.schema import SYNTHETIC, TASK_NAMES, TaskExample

MC = TaskExample(id="medqa/test/1", prompt="Which drug?", answer="B", choices=("Aspirin", "Heparin"))


def test_every_task_has_a_template_with_the_prompt() -> None:
    for task in (*TASK_NAMES, SYNTHETIC):
        assert "{prompt}" in TEMPLATES[task]


def test_multiple_choice_lists_the_options() -> None:
    text = build_prompt("medqa", MC)
    assert text.startswith("Which drug?\n\nA. Aspirin\nB. Heparin\n\n")
    assert "Answer: <letter>" in text


def test_options_already_in_the_question_are_not_repeated() -> None:
    kc = TaskExample(
        id="kcross/train/0",
        prompt="Pick.\nA. x;\nB. y;\n",
        answer="A",
        choices=("x;", "y;"),
        metadata={"choices_in_prompt": True},
    )
    assert (
        build_prompt("kcross", kc)
        == 'Pick.\nA. x;\nB. y;\n\nEnd your reply with a line of the form "Answer: <letter>".'
    )


def test_open_variant_for_examples_without_options() -> None:
    released = TaskExample(id="truthfulqa/train/1", prompt="Q: Is the sky green?\nA: No.\nTrue:")
    assert build_prompt("truthfulqa", released) == released.prompt
    assert "Exactly one option is true" in build_prompt("truthfulqa", MC)


def test_latex_and_braces_in_the_question_survive() -> None:
    math = TaskExample(id="math_easy/train/1", prompt="Find $\\frac{a}{b}$ if {choices} {prompt} appear.")
    text = build_prompt("math_easy", math)
    assert text.startswith("Find $\\frac{a}{b}$ if {choices} {prompt} appear.\n\n")
    assert text.endswith("\\boxed{}.")


def test_custom_template_and_raw() -> None:
    assert (
        build_prompt("medqa", MC, template="Q: {prompt}\n{choices}\nA:")
        == "Q: Which drug?\nA. Aspirin\nB. Heparin\nA:"
    )
    assert build_prompt("gsm8k", TaskExample(id="g", prompt="2+2?"), template=RAW_TEMPLATE) == "2+2?"
    assert template_for("com2", MC, {"com2": "Answer briefly: {prompt}"}) == "Answer briefly: {prompt}"


def test_raw_template_keeps_the_prompt_byte_for_byte() -> None:
    com2 = TaskExample(id="com2/train/1", prompt="Context: x\nThe answer is:\n", answer="y")
    assert build_prompt("com2", com2) == com2.prompt


def test_template_errors() -> None:
    with pytest.raises(ValueError, match="no \\{prompt\\} placeholder"):
        render("Answer: {question}", "q")
    with pytest.raises(ValueError, match="no prompt template for task 'nope'"):
        build_prompt("nope", MC)
    with pytest.raises(ValueError, match="at most 26 are supported"):
        format_choices(["x"] * 27)


def test_prompts_module_is_pure() -> None:
    tree = ast.parse(Path(prompts.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m.split(".")[0] for m in imported} & {"torch", "os", "io", "pathlib", "shutil", "datasets"}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "open" not in calls
