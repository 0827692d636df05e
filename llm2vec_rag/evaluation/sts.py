"""Semantic textual similarity: Spearman correlation of cosine similarity with gold scores.

Layouts (detected from the folder, as in ``../shared/data``):

- STS-B: ``sts-{train,dev,test}.csv``, tab-separated genre, file, year, id,
  score, sentence 1, sentence 2 (extra columns after the seventh are ignored).
- SICK: ``SICK_train.txt``, ``SICK_trial.txt`` (split ``dev``),
  ``SICK_test_annotated.txt`` (split ``test``); a header names
  ``sentence_A``, ``sentence_B``, ``relatedness_score``.
- STS 2012-16: year folders holding ``<subset>.test.tsv`` files of gold score,
  sentence 1, sentence 2 (lines without a gold score are skipped); a single
  year folder or a single ``.tsv`` file works too. Each year is scored in the
  "all" setting (its subsets pooled into one correlation, as SimCSE and
  LLM2Vec report it); every subset is reported as well.

Spearman is computed here (ranks with ties averaged, then Pearson of the
ranks): numpy only, no scipy.
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LLM2VecError

STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "trial": "SICK_trial.txt",
              "test": "SICK_test_annotated.txt"}


class STSDataError(LLM2VecError):
    """An STS file that is missing or malformed (the message names file and line)."""


# --------------------------------------------------------------------------- statistics
def rankdata(values: Any) -> np.ndarray:
    """1-based ranks; tied values share the average of the ranks they span."""
    a = np.asarray(values, dtype=np.float64).ravel()
    n = a.size
    if n == 0:
        return np.empty(0)
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n]  # exclusive
    average = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(n)
    ranks[order] = average[group]
    return ranks


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation; NaN when either side is constant or there are fewer than two points."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"pearson: {a.size} and {b.size} values")
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks."""
    return pearson(rankdata(x), rankdata(y))


# --------------------------------------------------------------------------- data
@dataclass
class STSSet:
    name: str
    s1: list[str]
    s2: list[str]
    scores: np.ndarray


@dataclass
class STSData:
    """One benchmark: groups (e.g. years) of subsets; ``pooled`` says whether a group is scored pooled."""

    name: str
    split: str
    groups: dict[str, list[STSSet]] = field(default_factory=dict)

    def pairs(self) -> int:
        return sum(len(s.scores) for sets in self.groups.values() for s in sets)


def _score(text: str, path: Path, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise STSDataError(f"{path}:{number}: gold score {text!r} is not a number") from None
    if not np.isfinite(value):
        raise STSDataError(f"{path}:{number}: gold score {text!r} is not finite")
    return value


def _lines(path: Path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield number, line


def read_stsb_file(path: Path) -> STSSet:
    s1, s2, scores = [], [], []
    for number, line in _lines(path):
        cols = line.split("\t")
        if len(cols) < 7:
            raise STSDataError(f"{path}:{number}: expected 7 tab-separated columns "
                               f"(genre, file, year, id, score, sentence 1, sentence 2), got {len(cols)}")
        scores.append(_score(cols[4], path, number))
        s1.append(cols[5])
        s2.append(cols[6])
    return _check(STSSet(path.stem, s1, s2, np.asarray(scores)), path)


def read_sick_file(path: Path) -> STSSet:
    s1, s2, scores = [], [], []
    header: list[str] | None = None
    for number, line in _lines(path):
        cols = line.split("\t")
        if header is None:
            header = cols
            missing = {"sentence_A", "sentence_B", "relatedness_score"} - set(header)
            if missing:
                raise STSDataError(f"{path}:{number}: SICK header lacks {', '.join(sorted(missing))}")
            ia, ib, ic = header.index("sentence_A"), header.index("sentence_B"), header.index("relatedness_score")
            continue
        if len(cols) <= max(ia, ib, ic):
            raise STSDataError(f"{path}:{number}: expected {len(header)} tab-separated columns, got {len(cols)}")
        scores.append(_score(cols[ic], path, number))
        s1.append(cols[ia])
        s2.append(cols[ib])
    return _check(STSSet(path.stem, s1, s2, np.asarray(scores)), path)


def read_gold_tsv(path: Path) -> STSSet:
    """SemEval STS: gold score, sentence 1, sentence 2; an empty gold score means unscored (skipped)."""
    s1, s2, scores = [], [], []
    for number, line in _lines(path):
        cols = line.split("\t")
        if len(cols) < 3:
            raise STSDataError(f"{path}:{number}: expected gold score, sentence 1, sentence 2 separated by tabs")
        if not cols[0].strip():
            continue
        scores.append(_score(cols[0], path, number))
        s1.append(cols[1])
        s2.append(cols[2])
    name = path.name.removesuffix(".tsv").removesuffix(".test")
    return _check(STSSet(name, s1, s2, np.asarray(scores)), path)


def _check(data: STSSet, path: Path) -> STSSet:
    if len(data.scores) == 0:
        raise STSDataError(f"{path}: no scored sentence pairs")
    return data


def _year_sets(folder: Path, split: str) -> list[STSSet]:
    files = sorted(folder.glob(f"*.{split}.tsv"))
    if not files:
        have = sorted({p.name.split(".")[-2] for p in folder.glob("*.tsv") if p.name.count(".") >= 2})
        raise STSDataError(f"{folder}: no *.{split}.tsv files" + (f" (splits here: {', '.join(have)})" if have else ""))
    return [read_gold_tsv(p) for p in files]


def load_sts(path: str | os.PathLike[str], split: str = "test") -> STSData:
    """Read an STS benchmark, detecting its layout (see the module doc)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise STSDataError(f"STS data {root} does not exist")
    if root.is_file():
        name = root.name
        if name.startswith("SICK"):
            sets = [read_sick_file(root)]
        elif root.suffix == ".csv":
            sets = [read_stsb_file(root)]
        else:
            sets = [read_gold_tsv(root)]
        return STSData(name=root.stem, split=split, groups={root.stem: sets})
    if any((root / f).is_file() for f in STSB_FILES.values()):
        file = root / STSB_FILES.get(split, f"sts-{split}.csv")
        if not file.is_file():
            raise STSDataError(f"{file} not found; STS-B splits: {', '.join(STSB_FILES)}")
        return STSData(name="stsb", split=split, groups={"stsb": [read_stsb_file(file)]})
    if any((root / f).is_file() for f in SICK_FILES.values()):
        file = root / SICK_FILES.get(split, f"SICK_{split}.txt")
        if not file.is_file():
            raise STSDataError(f"{file} not found; SICK splits: train, dev (trial), test")
        return STSData(name="sick-r", split=split, groups={"sick-r": [read_sick_file(file)]})
    years = sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"(19|20)\d\d", p.name))
    if years:
        groups = {f"sts{y.name[2:]}": _year_sets(y, split) for y in years}
        return STSData(name=root.name.lower(), split=split, groups=groups)
    if list(root.glob("*.tsv")):
        name = f"sts{root.name[2:]}" if re.fullmatch(r"(19|20)\d\d", root.name) else root.name.lower()
        return STSData(name=name, split=split, groups={name: _year_sets(root, split)})
    raise STSDataError(
        f"{root}: not an STS layout I know (STS-B sts-*.csv, SICK_*.txt, STS 2012-16 year folders of *.tsv)"
    )


def limit_pairs(data: STSData, max_pairs: int) -> STSData:
    """The first ``max_pairs`` pairs of each subset (quick checks during training)."""
    groups = {
        g: [STSSet(s.name, s.s1[:max_pairs], s.s2[:max_pairs], s.scores[:max_pairs]) for s in sets]
        for g, sets in data.groups.items()
    }
    return STSData(name=data.name, split=data.split, groups=groups)


# --------------------------------------------------------------------------- evaluation
def cosine_scores(encoder: Any, s1: list[str], s2: list[str], instruction: str = "", batch_size: int = 32,
                  show_progress: bool = False) -> np.ndarray:
    """Cosine similarity of each pair; every distinct sentence is encoded once."""
    unique = list(dict.fromkeys([*s1, *s2]))
    index = {t: i for i, t in enumerate(unique)}
    items = [[instruction, t] for t in unique] if instruction else unique
    vectors = np.asarray(encoder.encode(items, batch_size=batch_size, show_progress_bar=show_progress,
                                        normalize_embeddings=True), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    a = vectors[[index[t] for t in s1]]
    b = vectors[[index[t] for t in s2]]
    return (a * b).sum(axis=1)


def evaluate_sts(encoder: Any, data: STSData, instruction: str = "", batch_size: int = 32,
                 show_progress: bool = False) -> dict[str, Any]:
    """Spearman (x100 is the usual way to print it) and Pearson per group and subset, JSON-ready.

    ``spearman`` is the headline: the group's pooled correlation for a single
    group, else the mean over groups (e.g. STS12-16: the mean of the five years).
    """
    start = time.perf_counter()
    all_sets = [s for sets in data.groups.values() for s in sets]
    s1 = [t for s in all_sets for t in s.s1]
    s2 = [t for s in all_sets for t in s.s2]
    sims = cosine_scores(encoder, s1, s2, instruction, batch_size, show_progress)
    result: dict[str, Any] = {"dataset": data.name, "split": data.split, "model": getattr(encoder, "name", ""),
                              "instruction": instruction, "pairs": len(s1), "groups": {}}
    offset = 0
    for group, sets in data.groups.items():
        gold_parts, sim_parts, subsets = [], [], {}
        for s in sets:
            n = len(s.scores)
            part = sims[offset : offset + n]
            offset += n
            gold_parts.append(s.scores)
            sim_parts.append(part)
            subsets[s.name] = {"pairs": n, "spearman": round(spearman(part, s.scores), 5)}
        gold, sim = np.concatenate(gold_parts), np.concatenate(sim_parts)
        result["groups"][group] = {
            "pairs": int(gold.size),
            "spearman": round(spearman(sim, gold), 5),
            "pearson": round(pearson(sim, gold), 5),
            "subset_mean_spearman": round(float(np.mean([v["spearman"] for v in subsets.values()])), 5),
            "subsets": subsets,
        }
    values = [g["spearman"] for g in result["groups"].values()]
    result["spearman"] = round(float(np.mean(values)), 5)
    if len(result["groups"]) == 1:
        result["pearson"] = next(iter(result["groups"].values()))["pearson"]
    result["seconds"] = round(time.perf_counter() - start, 2)
    if show_progress:
        print(f"{data.name} ({data.split}): {len(s1)} pairs in {result['seconds']}s", file=sys.stderr)
    return result
