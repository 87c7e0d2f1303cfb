"""``sparta-hpc prepare-data``: convert a task's source data into ``OUT/<task>/{train,val,test}.jsonl``.

The source is the authors' released ``data/`` folder (the task's files are found by name), one task file,
or ``hf[:<dataset>[:<config>]]`` for the Hugging Face hub. Train is kept as given; the source's test split
is divided evenly (seeded) into val and test. Every file is written atomically; ``manifest.json`` (counts,
sources, bad records, notes) is written last.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sparta_hpc.errors import TaskDataError
from sparta_hpc.files import atomic_write_text
from sparta_hpc.tasks.convert import HUB_DATASETS, Converted, convert_records, hub_records, synthetic_task
from sparta_hpc.tasks.schema import SPLITS, SYNTHETIC, TASK_NAMES, SourceRecord, TaskExample
from sparta_hpc.tasks.schema import read_source_records as read_file_records

RELEASED_FILES: dict[str, tuple[str, ...]] = {
    "medqa": ("medqa/*.jsonl", "MedQA/*.jsonl"),
    "normad_country": ("culture/country_dataset.json",),
    "normad_value": ("culture/country_value_dataset.json",),
    "normad_rot": ("culture/rule_of_thumb_dataset.json",),
    "gsm8k": ("gsm8k/*.json", "gsm8k/*.jsonl"),
    "kcross": ("knowledge_crosswords/*.json",),
    "com2": ("com2/*.json", "com2/*.jsonl"),
    "math_easy": ("MATH/*/easy.jsonl",),
    "math_medium": ("MATH/*/medium.jsonl",),
    "math_hard": ("MATH/*/hard.jsonl",),
    "alpaca": ("alpaca/*.json",),
    "truthfulqa": ("truthfulqa/data_train.jsonl", "truthfulqa/*test*.jsonl"),
}
"""Where each task's files lie in the released ``data/`` folder (glob patterns). A file's split comes from
the split keys inside it, else from its name or folder (``test`` / ``dev`` / ``valid``), else train."""
MAX_PRINTED_BAD = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparta-hpc prepare-data``."""
    parser.add_argument(
        "--task", required=True, choices=(*TASK_NAMES, SYNTHETIC, "all"), help="task to convert"
    )
    parser.add_argument(
        "--source",
        help="the released data/ folder, one task file, or hf[:DATASET[:CONFIG]] (not needed for synthetic)",
    )
    parser.add_argument(
        "--out", required=True, help="output folder; writes OUT/<task>/{train,val,test}.jsonl"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the even val/test division (default 0)")
    parser.add_argument(
        "--synthetic-sizes", type=int, nargs=3, default=(200, 50, 50), metavar=("TRAIN", "VAL", "TEST")
    )


def main(args: argparse.Namespace) -> int:
    """Convert the requested task(s); 0 on success, 1 if a task could not be read, 2 for a usage error."""
    out = Path(args.out)
    if args.task == SYNTHETIC:
        try:
            num_train, num_val, num_test = args.synthetic_sizes
            splits = synthetic_task(num_train, num_val, num_test, seed=args.seed)
        except ValueError as e:
            print(f"error: --synthetic-sizes: {e}", file=sys.stderr)
            return 2
        print(_summary(write_task(out / SYNTHETIC, splits, {"task": SYNTHETIC, "seed": args.seed})))
        return 0
    if not args.source:
        print(f"error: --source is required for --task {args.task}", file=sys.stderr)
        return 2
    tasks = TASK_NAMES if args.task == "all" else (args.task,)
    failed = written = 0
    for task in tasks:
        try:
            sources = find_sources(task, args.source, single_task=args.task != "all")
            if not sources:
                print(f"{task}: no files found in {args.source}, skipped")
                continue
            root = Path(args.source) if Path(args.source).is_dir() else None
            manifest = prepare_task(task, sources, out, args.seed, root)
        except (TaskDataError, ValueError, OSError) as e:
            print(f"error: {task}: {e}", file=sys.stderr)
            failed += 1
            continue
        written += 1
        print(_summary(manifest))
    if written == 0 and not failed:
        print(f"error: no task files found in {args.source}", file=sys.stderr)
    return 1 if failed or written == 0 else 0


def find_sources(task: str, source: str, single_task: bool = True) -> list[str]:
    """The sources of ``task``: a hub spec as is, a file as is, else the task's files in a data/ folder."""
    if source == "hf" or source.startswith("hf:"):
        if not single_task and source != "hf":
            raise TaskDataError(f"--task all takes --source hf (each task's default dataset), not {source}")
        return [source] if single_task or task in HUB_DATASETS else []
    path = Path(source)
    if path.is_file():
        if not single_task:
            raise TaskDataError(f"--task all needs the released data/ folder, not the file {path}")
        return [source]
    if not path.is_dir():
        raise TaskDataError(f"{path}: no such file or folder")
    found = sorted({str(p) for pattern in RELEASED_FILES[task] for p in path.glob(pattern) if p.is_file()})
    if not found and single_task:
        raise TaskDataError(f"{path}: no {task} file (looked for {', '.join(RELEASED_FILES[task])})")
    return found


def source_records(task: str, source: str, root: Path | None = None) -> Iterable[SourceRecord]:
    """Records of one source: hub rows for ``hf[:...]``, else the file's (found in the folder ``root``)."""
    if source == "hf" or source.startswith("hf:"):
        return hub_records(task, source[3:])
    return read_file_records(source, root)


def split_evenly(examples: list[TaskExample], seed: int) -> tuple[list[TaskExample], list[TaskExample]]:
    """(val, test): a seeded shuffle cut in half (test gets the odd one), each half in source order."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    half = len(examples) // 2
    return [examples[i] for i in sorted(order[:half])], [examples[i] for i in sorted(order[half:])]


def divide(
    by_split: dict[str, list[TaskExample]], seed: int
) -> tuple[dict[str, list[TaskExample]], list[str]]:
    """Canonical splits from source splits: train as given; test (else valid) divided into val and test."""
    original = "test" if by_split.get("test") else "valid" if by_split.get("valid") else None
    val, test = split_evenly(by_split[original], seed) if original else ([], [])
    notes = []
    if original is None:
        notes.append("the source has no test split: val.jsonl and test.jsonl are empty")
    elif original == "valid":
        notes.append("the source has no test split: its validation split was divided into val and test")
    for name, examples in sorted(by_split.items()):
        if name not in ("train", original) and examples:
            notes.append(f"source split {name!r} ({len(examples)} records) not used: val/test come from test")
    return {"train": by_split.get("train", []), "val": val, "test": test}, notes


def _quirk_notes(task: str, sources: list[str]) -> list[str]:
    """Released-data quirks worth a warning (the Normad "value" file is a copy of the "country" file)."""
    notes = []
    for source in sources if task == "normad_value" else []:
        path = Path(source)
        country = path.with_name("country_dataset.json")
        if path.is_file() and country.is_file() and path.read_bytes() == country.read_bytes():
            notes.append(f"released quirk: {path} is a copy of {country}; normad_value = normad_country here")
    return notes


def prepare_task(
    task: str, sources: list[str], out_dir: Path, seed: int, root: Path | None = None
) -> dict[str, Any]:
    """Convert, divide and write one task (files found in the data folder ``root``); returns its manifest."""
    converted = Converted()
    for source in sources:
        convert_records(task, source_records(task, source, root), into=converted)
    splits, notes = divide(converted.by_split, seed)
    if converted.num_other_subset:
        notes.append(f"{converted.num_other_subset} records belong to other MATH levels, not this task")
    manifest = {
        "task": task,
        "sources": sources,
        "seed": seed,
        "source_counts": {name: len(examples) for name, examples in sorted(converted.by_split.items())},
        "bad_records": [str(b) for b in converted.bad],
        "notes": notes + _quirk_notes(task, sources),
    }
    return write_task(out_dir / task, splits, manifest)


def write_task(
    task_dir: Path, splits: dict[str, list[TaskExample]], manifest: dict[str, Any]
) -> dict[str, Any]:
    """Write the three split files, then ``manifest.json`` (with the counts), each atomically."""
    for split in SPLITS:
        lines = "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in splits[split])
        atomic_write_text(task_dir / f"{split}.jsonl", lines)
    manifest = {**manifest, "counts": {split: len(splits[split]) for split in SPLITS}}
    atomic_write_text(task_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    return manifest


def _summary(manifest: dict[str, Any]) -> str:
    """Counts per split, notes and (the first) bad records of one task, for the terminal."""
    counts = ", ".join(f"{split} {n}" for split, n in manifest["counts"].items())
    lines = [f"{manifest['task']}: {counts}"]
    lines += [f"  note: {note}" for note in manifest.get("notes", [])]
    bad = manifest.get("bad_records", [])
    if bad:
        lines.append(f"  {len(bad)} bad records not converted (all listed in manifest.json):")
        lines += [f"    {b}" for b in bad[:MAX_PRINTED_BAD]]
        if len(bad) > MAX_PRINTED_BAD:
            lines.append(f"    ... and {len(bad) - MAX_PRINTED_BAD} more")
    return "\n".join(lines)
