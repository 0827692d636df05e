"""Per-format text extraction: plain text, Markdown, reST, HTML, PDF.

Every reader returns a :class:`Document`: the text that gets chunked, plus
sections (character ranges with their heading path and PDF page) so chunks can
say where they came from. Undecodable bytes are replaced, never fatal.
"""
from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from ..errors import LLM2VecError


class UnreadableFileError(LLM2VecError):
    """A file that exists but whose format cannot be read (broken PDF, missing reader)."""


@dataclass
class Section:
    """A character range of a document under one heading path (and, for PDFs, one page)."""

    start: int
    end: int
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass
class Document:
    text: str
    sections: list[Section]
    title: str = ""
    kind: str = "text"
    extra: dict = field(default_factory=dict)


MARKDOWN_EXT = {".md", ".markdown", ".mdown", ".mkd"}
RST_EXT = {".rst", ".rest"}
HTML_EXT = {".html", ".htm", ".xhtml"}
PDF_EXT = {".pdf"}
TEXT_EXT = {".txt", ".text"}
# Source and other text files read as plain text (configurable with --ext).
SOURCE_EXT = {
    ".py", ".pyi", ".ipynb", ".js", ".jsx", ".ts", ".tsx", ".java", ".kt", ".scala", ".c", ".h", ".cc",
    ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m", ".r", ".jl", ".lua", ".pl",
    ".sh", ".bash", ".zsh", ".sql", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".tex", ".csv",
    ".tsv", ".xml", ".css", ".org", ".adoc", ".log",
}
DEFAULT_EXTENSIONS = frozenset(MARKDOWN_EXT | RST_EXT | HTML_EXT | PDF_EXT | TEXT_EXT | SOURCE_EXT)


def decode_bytes(data: bytes) -> str:
    """UTF-8 (BOM stripped) or UTF-16 when it says so; undecodable bytes become U+FFFD."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def looks_binary(data: bytes) -> bool:
    """A NUL byte in the first 8 KiB (outside UTF-16) marks a binary file, as git decides."""
    head = data[:8192]
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


# ------------------------------------------------------------------ Markdown
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def _sections_from_headings(text: str, marks: list[tuple[int, int, str]]) -> list[Section]:
    """Sections from (offset, level, title) heading marks, in document order."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    cursor = 0
    for offset, level, title in marks:
        if offset > cursor:
            sections.append(Section(cursor, offset, tuple(t for _, t in path)))
        path = [(lv, t) for lv, t in path if lv < level] + [(level, title)]
        cursor = offset
    if cursor < len(text) or not sections:
        sections.append(Section(cursor, len(text), tuple(t for _, t in path)))
    return [s for s in sections if text[s.start : s.end].strip()] or [Section(0, len(text))]


def read_markdown(text: str) -> Document:
    marks: list[tuple[int, int, str]] = []
    fence: str | None = None
    offset = 0
    lines = text.split("\n")
    starts = []
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    for i, line in enumerate(lines):
        fm = _FENCE.match(line)
        if fm:
            marker = fm.group(1)[0]
            if fence is None:
                fence = marker
            elif fence == marker:
                fence = None
            continue
        if fence is not None:
            continue
        m = _ATX.match(line)
        if m:
            marks.append((starts[i], len(m.group(1)), m.group(2).strip()))
            continue
        if i > 0 and _SETEXT.match(line) and lines[i - 1].strip() and not _ATX.match(lines[i - 1]):
            prev_blank = i < 2 or not lines[i - 2].strip()
            if prev_blank:
                marks.append((starts[i - 1], 1 if line.strip()[0] == "=" else 2, lines[i - 1].strip()))
    title = next((t for _, lv, t in marks if lv == 1), "")
    return Document(text, _sections_from_headings(text, marks), title=title, kind="markdown")


# ------------------------------------------------------------------ reStructuredText
_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.!$%&(),/;?@\[\\\]{|}])\1{2,}\s*$")


def read_rst(text: str) -> Document:
    lines = text.split("\n")
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    styles: list[tuple[str, bool]] = []
    marks: list[tuple[int, int, str]] = []
    i = 0
    while i < len(lines) - 1:
        title, under = lines[i], lines[i + 1]
        over = i > 0 and _RST_ADORN.match(lines[i - 1]) is not None
        if title.strip() and not _RST_ADORN.match(title) and _RST_ADORN.match(under) \
                and len(under.rstrip()) >= len(title.rstrip()):
            style = (under.strip()[0], bool(over and lines[i - 1].strip()[0] == under.strip()[0]))
            if style not in styles:
                styles.append(style)
            start = starts[i - 1] if style[1] else starts[i]
            marks.append((start, styles.index(style) + 1, title.strip()))
            i += 2
            continue
        i += 1
    title = marks[0][2] if marks else ""
    return Document(text, _sections_from_headings(text, marks), title=title, kind="rst")


# ------------------------------------------------------------------ HTML
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "section", "article", "header", "footer",
    "pre", "blockquote", "dd", "dt", "dl", "hr", "main", "nav", "aside", "figure", "figcaption", "form",
}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _HTMLText(HTMLParser):
    """Visible text with block breaks, the <title>, and heading positions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.closing = False  # in close(): what is left unterminated is flushed as "data"
        self.swallow = False  # an unterminated <!-- runs to the end of the document, as in browsers
        self.parts: list[str] = []
        self.length = 0
        self.skip = 0
        self.in_title = False
        self.title = ""
        self.heading: tuple[int, int, list[str]] | None = None  # (level, offset, words)
        self.marks: list[tuple[int, int, str]] = []
        self.pre = 0

    def _emit(self, s: str) -> None:
        self.parts.append(s)
        self.length += len(s)

    def _newline(self, n: int = 1) -> None:
        tail = "".join(self.parts[-2:])
        want = "\n" * n
        if self.length and not tail.endswith(want):
            self._emit("\n" if tail.endswith("\n") else want)

    def close(self) -> None:
        self.closing = True
        super().close()

    def handle_starttag(self, tag: str, attrs) -> None:
        tag = tag.rsplit("<", 1)[-1]  # "<scr<script>": a stray "<scr", then a real <script>
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _HEADING_TAGS:
            self._newline(2)
            self.heading = (_HEADING_TAGS[tag], self.length, [])
        elif tag in _BLOCK_TAGS:
            self._newline(2 if tag in {"p", "pre", "blockquote", "table", "section", "article"} else 1)
            if tag == "pre":
                self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        tag = tag.rsplit("<", 1)[-1]
        if tag == "title":
            self.in_title = False
        elif tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _HEADING_TAGS and self.heading is not None:
            level, offset, words = self.heading
            title = " ".join(" ".join(words).split())
            if title:
                self.marks.append((offset, level, title))
            self.heading = None
            self._newline(1)
        elif tag in _BLOCK_TAGS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline(1)

    def handle_data(self, data: str) -> None:
        if self.closing and data.startswith("<"):
            self.swallow = True  # an unterminated comment, declaration or tag: not visible text
        if self.swallow:
            return
        if self.in_title:
            self.title += data
            return
        if self.skip:
            return
        text = data if self.pre else re.sub(r"\s+", " ", data)
        if not self.pre and (not self.parts or self.parts[-1].endswith(("\n", " "))):
            text = text.lstrip()
        if text:
            self._emit(text)
            if self.heading is not None:
                self.heading[2].append(text)


def read_html(raw: str) -> Document:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = "".join(parser.parts)
    title = " ".join(parser.title.split())
    return Document(text, _sections_from_headings(text, parser.marks), title=title, kind="html")


# ------------------------------------------------------------------ PDF
def read_pdf(data: bytes) -> Document:
    """Text per page (pages become sections carrying their number); needs the ``pdf`` extra."""
    import io

    try:
        from pypdf import PdfReader
    except ImportError:
        raise UnreadableFileError("PDF support is not installed: pip install 'llm2vec-rag[pdf]'") from None
    with _captured_log("pypdf") as said:  # pypdf logs to stderr without the file's name: kept for the warning
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                reader.decrypt("")
            pages = [(page.extract_text() or "") for page in reader.pages]
            meta = reader.metadata
            title = str(meta.title) if meta is not None and meta.title else ""
        except Exception as exc:  # pypdf raises many types for broken files
            raise UnreadableFileError(f"cannot read PDF ({type(exc).__name__}: {str(exc)[:120]})") from None
    parts, sections, offset = [], [], 0
    for number, page in enumerate(pages, 1):
        page = page.replace("\r\n", "\n").replace("\x00", "")
        if page.strip():
            sections.append(Section(offset, offset + len(page), (), number))
        parts.append(page)
        offset += len(page) + 2
    text = "\n\n".join(parts)
    notes = list(dict.fromkeys(f"PDF: {m}" for m in said))[:5]
    return Document(text, sections or [Section(0, len(text))], title=title, kind="pdf",
                    extra={"pages": len(pages), **({"warnings": notes} if notes else {})})


@contextmanager
def _captured_log(name: str):
    """Log records and warnings of library ``name`` collected in a list instead of printed."""
    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(" ".join(record.getMessage().split())[:160])

    logger = logging.getLogger(name)
    handler, propagate = Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield said
        said.extend(" ".join(str(w.message).split())[:160] for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_document(path: Path, data: bytes) -> Document:
    """Dispatch on the extension; everything not listed above is read as plain text."""
    suffix = path.suffix.lower()
    if suffix in PDF_EXT:
        return read_pdf(data)
    text = decode_bytes(data)
    if suffix in MARKDOWN_EXT:
        return read_markdown(text)
    if suffix in RST_EXT:
        return read_rst(text)
    if suffix in HTML_EXT:
        return read_html(text)
    return Document(text, [Section(0, len(text))], kind="text")
