"""Class descriptions for stage 1: sentences per class, read from a file or shipped with cascade.

Two file formats:

- JSON, a mapping of class name to a list of sentences: ``{"anger": ["...", ...], ...}``;
- CSV or TSV (by suffix ``.tsv`` or a tab in the header) with a header naming the columns
  ``class`` and ``sentence``; one sentence per row, other columns ignored.

Class names match the run's classes case-insensitively, with ``_`` and spaces alike. The
shipped sets (``*.json`` beside this module) cover Emotion6 with neutral, Mikels' eight
emotions and the eight FER+ facial expressions; :func:`shipped_set_for` picks the one that
covers a run's classes.
"""
from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path
from typing import Callable

# Shipped set name → its file beside this module (checked in order: the first one
# that covers every class of a run is used).
SHIPPED: dict[str, str] = {
    "emotion6+neutral": "emotion6_neutral.json",
    "mikels8": "mikels8.json",
    "ferplus": "ferplus.json",
}


class DescriptionsError(ValueError):
    """A descriptions file that cannot be used; the message names the file and the problem."""


def class_key(name: str) -> str:
    """How class names are compared: case-insensitive, ``_`` and runs of spaces as one space."""
    return " ".join(name.replace("_", " ").lower().split())


def _parse_json(text: str, where: str) -> dict[str, list[str]]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DescriptionsError(f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") \
            from None
    if not isinstance(raw, dict):
        raise DescriptionsError(f"{where}: expected a JSON object {{class: [sentence, ...]}}, "
                                f"got {type(raw).__name__}")
    out: dict[str, list[str]] = {}
    for name, sentences in raw.items():
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise DescriptionsError(f"{where}: class {name!r} must map to a list of sentences (strings)")
        out[name] = [s.strip() for s in sentences if s.strip()]
    return out


def _parse_table(text: str, where: str, delimiter: str) -> dict[str, list[str]]:
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(rows, None)
        if header is None:
            raise DescriptionsError(f"{where}: empty file; expected a header with the columns class and sentence")
        names = [h.strip().lower() for h in header]
        missing = [c for c in ("class", "sentence") if c not in names]
        if missing:
            raise DescriptionsError(f"{where}: line 1: the header lacks the column(s) {', '.join(missing)} "
                                    f"(found {', '.join(header) or 'nothing'})")
        ci, si = names.index("class"), names.index("sentence")
        out: dict[str, list[str]] = {}
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            line = rows.line_num
            if len(row) <= max(ci, si):
                raise DescriptionsError(f"{where}: line {line}: expected {len(header)} columns, got {len(row)}")
            name, sentence = row[ci].strip(), row[si].strip()
            if not name:
                raise DescriptionsError(f"{where}: line {line}: empty class name")
            sentences = out.setdefault(name, [])
            if sentence:
                sentences.append(sentence)
    except csv.Error as exc:
        raise DescriptionsError(f"{where}: line {rows.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} "
                                f"({exc})") from None
    return out


def parse_descriptions(text: str, where: str = "descriptions", fmt: str | None = None) -> dict[str, list[str]]:
    """Class → sentences from the text of a descriptions file (``fmt``: json, csv or tsv;
    None guesses: JSON when the text starts with ``{``, else CSV, or TSV when the header holds a tab)."""
    body = text.lstrip("\ufeff")
    if fmt is None:
        first = body.lstrip()[:1]
        header = body.split("\n", 1)[0]
        fmt = "json" if first in ("{", "[") else ("tsv" if "\t" in header else "csv")
    if fmt == "json":
        return _parse_json(body, where)
    if fmt in ("csv", "tsv"):
        return _parse_table(body, where, "\t" if fmt == "tsv" else ",")
    raise ValueError(f"unknown descriptions format {fmt!r}; choose json, csv or tsv")


def read_descriptions(path: str | Path) -> dict[str, list[str]]:
    """Class → sentences, in the file's order, from a JSON, CSV or TSV descriptions file."""
    path = Path(path)
    if not path.is_file():
        raise DescriptionsError(f"{path}: no such descriptions file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DescriptionsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    suffix = path.suffix.lower()
    fmt = {".json": "json", ".csv": "csv", ".tsv": "tsv"}.get(suffix)
    if fmt == "csv" and "\t" in text.split("\n", 1)[0] and "," not in text.split("\n", 1)[0]:
        fmt = "tsv"
    return parse_descriptions(text, str(path), fmt)


def select_classes(found: dict[str, list[str]], classnames: list[str], where: str,
                   note: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """The sentences of each of ``classnames`` (in that order) out of a file's classes.

    A class the file lacks, or whose sentence list is empty, is an error naming it; classes
    the run does not use are ignored with one ``note``.
    """
    by_key: dict[str, str] = {}
    for name in found:
        key = class_key(name)
        if key in by_key:
            raise DescriptionsError(f"{where}: classes {by_key[key]!r} and {name!r} are the same class "
                                    "(names compare case-insensitively)")
        by_key[key] = name
    missing = [c for c in classnames if class_key(c) not in by_key]
    if missing:
        raise DescriptionsError(f"{where}: no sentences for class(es) {', '.join(repr(c) for c in missing)} "
                                f"(the file has {', '.join(repr(n) for n in found) or 'no classes'})")
    empty = [c for c in classnames if not found[by_key[class_key(c)]]]
    if empty:
        raise DescriptionsError(f"{where}: class(es) {', '.join(repr(c) for c in empty)} have no sentences")
    used = {class_key(c) for c in classnames}
    extra = [name for name in found if class_key(name) not in used]
    if extra and note is not None:
        note(f"note: {where}: ignoring {len(extra)} class(es) this run does not use: "
             f"{', '.join(repr(n) for n in extra)}")
    return {c: list(found[by_key[class_key(c)]]) for c in classnames}


def shipped(name: str) -> dict[str, list[str]]:
    """One shipped set (a key of :data:`SHIPPED`): class → sentences."""
    text = resources.files(__name__).joinpath(SHIPPED[name]).read_text(encoding="utf-8")
    return parse_descriptions(text, f"shipped descriptions {name}", "json")


def shipped_set_for(classnames: list[str]) -> str:
    """The name of the first shipped set that covers every one of ``classnames``."""
    wanted = {class_key(c) for c in classnames}
    for name in SHIPPED:
        if wanted <= {class_key(c) for c in shipped(name)}:
            return name
    covered = set().union(*({class_key(c) for c in shipped(n)} for n in SHIPPED))
    lacking = [c for c in classnames if class_key(c) not in covered]
    detail = (f"no shipped sentences for {', '.join(repr(c) for c in lacking)}" if lacking
              else "no single shipped set holds all of them")
    raise DescriptionsError(f"classifier.descriptions: the shipped sets ({', '.join(SHIPPED)}) do not cover the "
                            f"classes {classnames} ({detail}); give a descriptions file")


def load_descriptions(classnames: list[str], path: str | Path | None = None,
                      note: Callable[[str], None] | None = None) -> tuple[dict[str, list[str]], str]:
    """Sentences per class for a run: from ``path``, or the shipped set covering ``classnames``.

    Returns (class → sentences in ``classnames`` order, where they came from: the file's
    path or ``shipped:<set>``).
    """
    if path is not None:
        return select_classes(read_descriptions(path), classnames, str(path), note), str(path)
    name = shipped_set_for(classnames)
    return select_classes(shipped(name), classnames, f"shipped descriptions {name}"), f"shipped:{name}"
