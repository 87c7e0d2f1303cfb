"""Tiny Llama models built locally (no hub): a base and random LoRA adapters, deterministic from a seed.

They answer gibberish, but they exercise every code path of the engines and the DPO job in seconds on a CPU.
The tokenizer is a ~1000-token byte-level BPE in which each of ``1``..``10`` is a single token, so the logprob
judge can read scores. Builds are atomic (a temporary sibling directory renamed into place) and cached: a
directory that already holds a complete build is returned as is.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from sparta_hpc.files import canonical_adapter_config, staging_dir

BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] -}}"
    "{%- if message['role'] == 'assistant' -%}{{- eos_token -}}{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)
VOCAB_SIZE = 1000
LORA_INIT_STD = 0.1
"""Std of the random LoRA A and B entries: large enough that two adapters change greedy outputs."""

_WORDS = """
the of and to in is was that for it with as his on be at by had are but from or have an they which
one you were her all she there would their we him been has when who will more no if out so said what
up its about into than them can only other new some could time these two may then do first any my
now such like our over man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good very
make world still own see men work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three small
large answer question model score response rate judge helpful correct wrong number word sentence
explain reason step think answer write code python function return value list water light house tree
river city music story science math history language computer data learn teach student school book
paper table chair green blue red yellow happy quick slow bright dark warm cold early late simple
clear short true false please thank sure example because however therefore first second third
finally summary detail idea plan result test check problem
"""
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _corpus_lines(num_lines: int = 4000) -> Iterator[str]:
    """A fixed pseudo-English corpus with digits 0-10, arithmetic, chat turns and JSON scores."""
    rng = random.Random(1234)
    words = _WORDS.split()
    for i in range(num_lines):
        kind = i % 5
        if kind == 0:
            yield " ".join(rng.choice(words) for _ in range(rng.randint(5, 14))).capitalize() + "."
        elif kind == 1:
            a = rng.randint(0, 10)
            b = rng.randint(0, 10 - a)
            yield f"{a} + {b} = {a + b}. {_NUMBERS[a]} plus {_NUMBERS[b]} is {_NUMBERS[a + b]}."
        elif kind == 2:
            score = rng.randint(1, 10)
            yield f'Rate the response from 1 to 10. {{"score": {score}}} Score: {score} {score}/10'
        elif kind == 3:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
            yield f"<|user|>\n{text}?\n<|assistant|>\n{text.capitalize()}.</s>"
        else:
            yield f"{rng.randint(0, 10)} {rng.randint(0, 10)} {rng.randint(1, 10)}, {rng.choice(words)} 10"


def _train_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Train the byte-level BPE and wrap it with special tokens, left padding and the chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Digit runs are pieces of their own, so " 7" never merges into one token and "10" becomes one.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )


def _write_base(tmp: Path, seed: int) -> None:
    """Save the tokenizer and a randomly initialised tiny Llama into ``tmp``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer()
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        **ids,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.update(pad_token_id=tokenizer.pad_token_id, **ids)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(tmp)


def build_tiny_base(out_dir: str | Path, seed: int = 0) -> Path:
    """Build (or reuse) a tiny Llama base model with its tokenizer in ``out_dir``; returns ``out_dir``."""
    out = Path(out_dir)
    if _is_complete(out, BASE_FILES):
        return out
    with staging_dir(out) as tmp:
        _write_base(tmp, seed)
    return out


def build_tiny_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    rank: int = 8,
    alpha: int = 16,
    targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    base_name: str | None = None,
) -> Path:
    """Build (or reuse) a LoRA adapter for ``base_dir`` whose A and B matrices are random from ``seed``.

    Unlike PEFT's default init (B = 0, identical to the base), different seeds give different players.
    ``base_name``: the base's name in the adapter's config (default: ``base_dir``).
    """
    out = Path(out_dir)
    if _is_complete(out, ADAPTER_FILES):
        return out
    with staging_dir(out) as tmp:
        _write_adapter(Path(base_dir), tmp, seed, rank, alpha, tuple(targets))
        canonical_adapter_config(tmp, base_name)
    return out


def _write_adapter(
    base_dir: Path, tmp: Path, seed: int, rank: int, alpha: int, targets: tuple[str, ...]
) -> None:
    """Attach a LoRA to the base, overwrite its A and B with seeded normals, save only the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets), task_type="CAUSAL_LM"
    )
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * LORA_INIT_STD)
    model.save_pretrained(str(tmp))
    canonical_adapter_config(tmp)
    (tmp / "README.md").unlink(missing_ok=True)


def _is_complete(path: Path, files: Sequence[str]) -> bool:
    """Whether ``path`` holds every file of a finished build; raises if it holds something else."""
    if all((path / name).is_file() for name in files):
        return True
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"{path} exists but is not a complete build (needs {', '.join(files)}); remove it"
        )
    return False
