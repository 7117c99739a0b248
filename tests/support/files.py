"""Checks that an exported file is what a paper needs: used by the report and browser tests."""
from __future__ import annotations

import csv
import io
import re

BOOKTABS_RULES = (r"\toprule", r"\midrule", r"\bottomrule")


def check_pdf(data: bytes, where: str = "") -> str:
    """The PDF parses, has a page and a real document title; returns the title."""
    from pypdf import PdfReader

    assert data.startswith(b"%PDF"), f"{where}: not a PDF ({data[:8]!r})"
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 1, f"{where}: no page"
    title = (reader.metadata or {}).get("/Title")
    assert title and "kaleido" not in str(title).lower(), f"{where}: PDF title is {title!r}"
    return str(title)


def check_png(data: bytes, where: str = "", dpi: float = 300) -> tuple[int, int]:
    """A PNG that records its resolution (``pHYs``); returns its pixel size."""
    from PIL import Image

    assert data.startswith(b"\x89PNG"), f"{where}: not a PNG"
    with Image.open(io.BytesIO(data)) as img:
        got = img.info.get("dpi")
        assert got is not None, f"{where}: the PNG records no dpi"
        assert abs(got[0] - dpi) < 0.1 and abs(got[1] - dpi) < 0.1, f"{where}: dpi {got}, expected {dpi}"
        return img.size


def check_svg(data: bytes, where: str = "") -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(data)
    assert root.tag.endswith("svg"), f"{where}: not an SVG ({root.tag})"


def check_csv(data: bytes, where: str = "") -> list[str]:
    """A CSV with a header row of non-empty names (a first index column may be blank); returns the header."""
    text = data.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows, f"{where}: empty CSV"
    header = rows[0]
    assert len(header) >= 1 and all(h.strip() for h in header[1:]), f"{where}: header {header}"
    if header[0]:   # a labelled matrix has a blank corner cell and may have numeric column labels
        assert not all(re.fullmatch(r"-?[0-9.eE+-]+", h) for h in header), f"{where}: the first row is data"
    return header


def check_latex(text: str, where: str = "") -> None:
    """Balanced braces and environments, the three booktabs rules, a tabular."""
    depth = 0
    clean = re.sub(r"\\[{}%&$#_]", "", text)          # escaped characters are not group delimiters
    for ch in clean:
        depth += ch == "{"
        depth -= ch == "}"
        assert depth >= 0, f"{where}: a '}}' closes nothing"
    assert depth == 0, f"{where}: {depth} unclosed brace(s)"
    assert clean.count("$") % 2 == 0, f"{where}: unbalanced math mode"
    begins = re.findall(r"\\begin\{(\w+\*?)\}", text)
    ends = re.findall(r"\\end\{(\w+\*?)\}", text)
    assert begins == ends[::-1], f"{where}: environments {begins} closed as {ends}"
    assert "tabular" in begins, f"{where}: no tabular"
    for rule in BOOKTABS_RULES:
        assert rule in text, f"{where}: no {rule}"
    assert not re.search(r"[^\x00-\x7f]", text), f"{where}: non-ASCII characters need a Unicode LaTeX set-up"
