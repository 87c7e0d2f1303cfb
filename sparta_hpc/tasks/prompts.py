"""Prompt builders: the text a player sees for an example, in tournaments and in evaluation. Pure, no I/O.

A template is plain text with placeholders: ``{prompt}`` (the example's question, required), ``{choices}``
(its options as ``A. ...`` lines) and ``{metadata.KEY}`` (a value of the example's metadata). Other braces are
left alone, so LaTeX in templates and questions is safe. Without options (or when the source already lists
them in the question, ``metadata["choices_in_prompt"]``), ``{choices}`` and the blank lines before it are
dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from sparta_hpc.tasks.schema import LETTERS, TaskExample

RAW_TEMPLATE = "{prompt}"
"""The question exactly as the source gives it (the released code's prompts)."""

_ANSWER_LETTER = 'End your reply with a line of the form "Answer: <letter>".'
_MATH = "{prompt}\n\nReason step by step and write the final answer inside \\boxed{}."
_NORMAD = "{prompt}\n\nBegin your reply with one word, Yes, No or Neutral, then give a short reason."

TEMPLATES: dict[str, str] = {
    "gsm8k": '{prompt}\n\nWork it out step by step, then end with a line "Answer: <number>".',
    "synthetic": RAW_TEMPLATE,
    "math_easy": _MATH,
    "math_medium": _MATH,
    "math_hard": _MATH,
    "medqa": "{prompt}\n\n{choices}\n\nChoose the single best option. " + _ANSWER_LETTER,
    "kcross": "{prompt}\n\n{choices}\n\n" + _ANSWER_LETTER,
    "truthfulqa": "{prompt}\n\n{choices}\n\nExactly one option is true. " + _ANSWER_LETTER,
    "truthfulqa:open": RAW_TEMPLATE,
    "normad_country": _NORMAD,
    "normad_value": _NORMAD,
    "normad_rot": _NORMAD,
    "com2": RAW_TEMPLATE,
    "alpaca": RAW_TEMPLATE,
}
"""Default template per task. ``<task>:open`` is used instead for examples without options, where defined."""

_PLACEHOLDER = re.compile(r"\{(prompt|choices|metadata\.[A-Za-z0-9_]+)\}")


def format_choices(choices: Sequence[str]) -> str:
    """Options as lines ``A. first``, ``B. second`` ..."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} options; at most {len(LETTERS)} are supported")
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(choices))


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` contains ``{prompt}``."""
    if "{prompt}" not in template:
        raise ValueError(f"prompt template {template!r} has no {{prompt}} placeholder")


def template_for(task: str, example: TaskExample, templates: Mapping[str, str] | None = None) -> str:
    """The template of ``task`` (from ``templates``, else ``TEMPLATES``), its ``:open`` variant when the
    example has no options."""
    table = {**TEMPLATES, **(templates or {})}
    if not example.choices and f"{task}:open" in table:
        return table[f"{task}:open"]
    if task not in table:
        raise ValueError(f"no prompt template for task {task!r}; known: {', '.join(sorted(table))}")
    return table[task]


def render(
    template: str, prompt: str, choices: str = "", metadata: Mapping[str, object] | None = None
) -> str:
    """Fill ``{prompt}``, ``{choices}`` and ``{metadata.KEY}`` in one pass (text inserted is never
    re-scanned). The prompt's trailing whitespace is kept only where it ends the text; a missing metadata key
    raises ValueError."""
    check_template(template)
    if not choices:
        template = re.sub(r"\n*\{choices\}", "", template)
    values = {"prompt": prompt if template.endswith("{prompt}") else prompt.rstrip(), "choices": choices}

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if not name.startswith("metadata."):
            return values[name]
        key = name.removeprefix("metadata.")
        if metadata is None or key not in metadata:
            raise ValueError(f"the template uses {{{name}}} but the example's metadata has no key {key!r}")
        found = metadata[key]
        return found if isinstance(found, str) else json.dumps(found)

    return _PLACEHOLDER.sub(value, template)


JUDGE_FIELDS = ("{question}", "{response}")
"""Placeholders a judge prompt of your own (``judge.rubric_file``, ``eval.judge_rubric_file``) must hold."""


def check_judge_template(template: str) -> None:
    """Raise ValueError unless ``template`` holds ``{question}`` and ``{response}``."""
    missing = [f for f in JUDGE_FIELDS if f not in template]
    if missing:
        raise ValueError(f"the judge prompt has no {' or '.join(missing)} placeholder")


def render_judge(template: str, question: str, response: str) -> str:
    """A judge prompt of your own with ``{question}`` and ``{response}`` filled in one pass (other braces,
    such as a ``{"score": N}`` format, are kept)."""
    values = {"question": question, "response": response}
    return re.sub(r"\{(question|response)\}", lambda m: values[m.group(1)], template)


def build_prompt(task: str, example: TaskExample, template: str | None = None) -> str:
    """The prompt a player answers for ``example``; ``template`` overrides the task's default."""
    chosen = template if template is not None else template_for(task, example)
    listed = example.choices and not example.metadata.get("choices_in_prompt", False)
    try:
        return render(
            chosen, example.prompt, format_choices(example.choices) if listed else "", example.metadata
        )
    except ValueError as e:
        raise ValueError(f"{example.id}: {e}") from None
