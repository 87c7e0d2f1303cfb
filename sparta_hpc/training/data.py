"""The DPO data policy: every preference pair is kept whole, kept truncated as configured, or dropped and
counted with its reason, by sparta-hpc before TRL sees it, so that TRL itself never drops or cuts a pair.

Why: TRL's DPOTrainer (1.16) silently drops a pair whose prompt fills ``max_length`` and cuts the end of a
sequence that is longer (``DPOTrainer._prepare_dataset``, ``DataCollatorForPreference``), while the job's pair
count is taken before that; the released code capped prompts at 256 tokens instead.

The policy, per pair, with the player's tokenizer and TRL's own way of counting tokens (the text tokenized as
one string; a pair's sequences are prompt + chosen and prompt + rejected):

1. Prompt = the chat template with the instruction as user turn (``template_prompt``). With
   ``train.max_prompt_tokens`` set, a longer templated prompt loses tokens of its instruction until it fits:
   from the start with ``train.prompt_truncation=left`` (the default: the tasks put their answer instruction
   at the end of the prompt, and the released trainer kept the end of the prompt too), from the end with
   ``right``. Only the instruction is cut; the chat template (BOS, role markers, generation prompt) stays.
2. A pair whose prompt (after the cap) leaves no room in ``train.max_length`` for one response token and the
   EOS is dropped: reason ``prompt_too_long``.
3. A response (chosen or rejected) longer than ``max_length`` minus the prompt is cut at its end to fit, and
   the model's EOS token is appended after the cut, as after every response (spec section 7).
4. After TRL has prepared the dataset, ``check_trl`` counts what TRL dropped anyway (reason ``trl_filter``)
   and the sequences its collator would still cut (``truncated.trl_cut``): both are 0 unless a tokenizer
   counts a text differently in a batch, and they are reported, never hidden.

The job's stats hold the counts (``DataStats.to_dict``): ``given = kept + sum(dropped.values())``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROMPT_SIDES = ("left", "right")
DROP_REASONS = ("prompt_too_long", "trl_filter")
"""Why a pair was not trained on: its prompt leaves no room for a response in ``train.max_length`` (after the
``train.max_prompt_tokens`` cap), or TRL's preprocessing dropped it although it fit by our count."""
_MIN_RESPONSE = 2
"""Tokens a response needs at least: one of its own and the EOS."""


@dataclass
class DataStats:
    """What the policy did to one player's pairs."""

    given: int = 0
    kept: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0
    """Pairs with the chosen or the rejected response (or both) cut."""
    trl_cut: int = 0
    """Kept pairs whose sequence TRL's collator would still cut (0 unless token counts disagree)."""
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def drop_share(self) -> float:
        return sum(self.dropped.values()) / self.given if self.given else 0.0

    def to_dict(self, max_drop_share: float) -> dict[str, Any]:
        """The ``data`` entry of the job's stats."""
        share = self.drop_share()
        return {
            "given": self.given,
            "kept": self.kept,
            "truncated": {"prompt": self.prompt_truncated, "response": self.response_truncated,
                          "trl_cut": self.trl_cut},
            "dropped": dict(self.dropped),
            "drop_share": round(share, 6),
            "over_max_drop_share": share > max_drop_share,
        }  # fmt: skip


def template_prompt(tokenizer: Any, instruction: str) -> str:
    """The chat template with ``instruction`` as user turn and the generation prompt, as TRL gets it."""
    messages = [{"role": "user", "content": instruction}]
    prompt: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # TRL tokenizes plain-text pairs with special tokens: drop a templated BOS the tokenizer adds again.
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos) and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]:
        prompt = prompt[len(bos) :]
    return prompt


def prepare_pairs(
    tokenizer: Any,
    pairs: list[dict[str, str]],
    *,
    max_length: int,
    max_prompt_tokens: int | None,
    prompt_truncation: str = "left",
) -> tuple[list[dict[str, str]], DataStats]:
    """The formatted pairs that fit ``max_length`` (truncated as configured, in order) and the counts."""
    if prompt_truncation not in PROMPT_SIDES:
        raise ValueError(f"prompt_truncation={prompt_truncation!r} must be one of {PROMPT_SIDES}")
    stats = DataStats(given=len(pairs))
    kept = []
    for pair in pairs:
        prompt, prompt_len, prompt_cut = _fit_prompt(
            tokenizer, pair["prompt"], max_prompt_tokens, prompt_truncation
        )
        if prompt is None or prompt_len + _MIN_RESPONSE > max_length:
            stats.dropped["prompt_too_long"] += 1
            continue
        chosen, chosen_cut = _fit_response(tokenizer, prompt, pair["chosen"], max_length)
        rejected, rejected_cut = _fit_response(tokenizer, prompt, pair["rejected"], max_length)
        stats.prompt_truncated += prompt_cut
        stats.response_truncated += chosen_cut or rejected_cut
        kept.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    stats.kept = len(kept)
    return kept, stats


def check_trl(stats: DataStats, dataset: Any, max_length: int) -> None:
    """Count in ``stats`` what TRL's prepared ``dataset`` (rows of prompt_ids, chosen_ids, rejected_ids) lost:
    pairs its filter dropped, and sequences its collator would cut at ``max_length``."""
    stats.dropped["trl_filter"] += stats.kept - len(dataset)
    stats.kept = len(dataset)
    stats.trl_cut = sum(
        len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) > max_length
        for row in dataset
    )


def drop_warning(player: str, data: dict[str, Any], max_drop_share: float) -> str | None:
    """A warning line when a player's job dropped more than ``max_drop_share`` of its pairs, else None."""
    if not data.get("over_max_drop_share"):
        return None
    reasons = ", ".join(f"{reason} {n}" for reason, n in data["dropped"].items() if n)
    return (
        f"WARNING{' ' + player if player else ''}: {sum(data['dropped'].values())} of {data['given']} "
        "preference pairs dropped "
        f"({data['drop_share']:.1%} > train.max_drop_share={max_drop_share:g}; {reasons}); "
        "raise train.max_length or set train.max_prompt_tokens"
    )


def sum_data(datas: list[dict[str, Any]], max_drop_share: float) -> dict[str, Any]:
    """The ``data`` entries of several jobs' stats, summed (the train stage's info in the run state)."""
    total = DataStats()
    for data in datas:
        total.given += data["given"]
        total.kept += data["kept"]
        total.prompt_truncated += data["truncated"]["prompt"]
        total.response_truncated += data["truncated"]["response"]
        total.trl_cut += data["truncated"]["trl_cut"]
        for reason, n in data["dropped"].items():
            total.dropped[reason] = total.dropped.get(reason, 0) + n
    return total.to_dict(max_drop_share)


def data_line(data: dict[str, Any]) -> str:
    """One line for the launcher log: kept, truncated and dropped pairs."""
    truncated = ", ".join(f"{what} {n}" for what, n in data["truncated"].items() if n) or "none"
    dropped = ", ".join(f"{reason} {n}" for reason, n in data["dropped"].items() if n) or "none"
    return f"pairs kept {data['kept']} of {data['given']} (truncated: {truncated}; dropped: {dropped})"


def _length(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as TRL counts a plain-text pair (the tokenizer's call, special tokens added)."""
    return len(tokenizer(text=text)["input_ids"])


def _fit_prompt(
    tokenizer: Any, instruction: str, limit: int | None, side: str
) -> tuple[str | None, int, bool]:
    """The templated prompt of ``instruction``, its instruction cut on ``side`` to at most ``limit`` tokens in
    all; its length; whether it was cut. None when the template alone is longer than ``limit``."""
    prompt = template_prompt(tokenizer, instruction)
    length = _length(tokenizer, prompt)
    if limit is None or length <= limit:
        return prompt, length, False
    ids = tokenizer(instruction, add_special_tokens=False)["input_ids"]
    keep = len(ids) - (length - limit)
    while keep > 0:  # re-tokenizing the cut text may count a token or two differently: shrink until it fits
        piece = ids[len(ids) - keep :] if side == "left" else ids[:keep]
        prompt = template_prompt(tokenizer, _decode(tokenizer, piece))
        length = _length(tokenizer, prompt)
        if length <= limit:
            return prompt, length, True
        keep -= length - limit
    return None, length, True


def _fit_response(tokenizer: Any, prompt: str, response: str, max_length: int) -> tuple[str, bool]:
    """``response`` + EOS, its end cut so that prompt + response fits ``max_length``; whether it was cut."""
    eos = tokenizer.eos_token
    excess = _length(tokenizer, prompt + response + eos) - max_length
    if excess <= 0:
        return response + eos, False
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    keep = len(ids) - excess
    while keep > 0:
        text = _decode(tokenizer, ids[:keep]) + eos
        excess = _length(tokenizer, prompt + text) - max_length
        if excess <= 0:
            return text, True
        keep -= excess
    return eos, True  # fits: the prompt leaves room for _MIN_RESPONSE tokens


def _decode(tokenizer: Any, ids: list[int]) -> str:
    """Text of a token slice; a character split at the cut (a lone UTF-8 byte) is left out."""
    text: str = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text.strip("\ufffd")
