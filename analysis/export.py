"""Figure and matrix export: PDF/SVG/PNG through kaleido ≥ 1 and a system Chromium.

Kaleido 1.x no longer ships a browser; it drives an installed Chrome/Chromium
through ``choreographer``.  This module finds the browser itself
(:func:`find_browser`: ``$BROWSER_PATH``, then Debian's ``/usr/bin/chromium`` and
the usual names on ``PATH``) and always hands kaleido an explicit path, so
choreographer's own search, and with it any hint to download a Chrome build,
never comes into play.  Choreographer starts Chromium with ``--no-sandbox``
unless asked otherwise, which is what running as root in a container needs.

Starting Chromium costs seconds, rendering a figure a fraction of one, so one
browser is kept alive for the whole process (on a private event-loop thread,
closed at exit or by :func:`close_browser`) and reused by every export.  A
browser that died is replaced once, transparently.  MathJax is disabled: kaleido
would otherwise fetch it from a CDN, which an offline machine cannot reach.

Writes are atomic: bytes go to a temporary file beside the target, which then
replaces it, so a reader never sees half a figure.

Files are made ready for a paper: a PNG records its resolution (a ``pHYs`` chunk,
300 dpi by default, the resolution it was rendered at), and a PDF carries a real
document title (the figure's title, or one given) instead of the export page's.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import csv
import io
import os
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pypdf import PdfReader, PdfWriter

from cascade.fileio import atomic_write_bytes

__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_PNG_SCALE",
    "ExportError",
    "SUPPORTED_FORMATS",
    "close_browser",
    "export_figure",
    "export_matrix",
    "figure_bytes",
    "find_browser",
]

SUPPORTED_FORMATS = ("pdf", "svg", "png")
CSS_PX_PER_INCH = 96
# 300 dpi at the figure's physical size (plotly lays out at 96 px per inch).
DEFAULT_DPI = 300
DEFAULT_PNG_SCALE = DEFAULT_DPI / CSS_PX_PER_INCH
PDF_CREATOR = "cascade (plotly + kaleido)"
RENDER_TIMEOUT_S = 90.0
START_TIMEOUT_S = 60.0

# Absolute paths first (Debian's package), then names looked up on PATH.
_BROWSER_CANDIDATES: tuple[str, ...] = (
    "/usr/bin/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
)


class ExportError(RuntimeError):
    """A figure could not be exported (no browser, browser failure, bad arguments)."""


# ---------------------------------------------------------------------------
# browser discovery
# ---------------------------------------------------------------------------


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_browser() -> str:
    """Path of the Chromium/Chrome executable kaleido should drive.

    ``$BROWSER_PATH`` wins when set (the variable choreographer itself honours),
    and an invalid value is an error rather than silently ignored.  Otherwise the
    first executable among ``/usr/bin/chromium``, ``chromium``,
    ``chromium-browser``, ``google-chrome``... on ``PATH``.

    Raises:
        ExportError: no usable browser; the message says how to install one.
    """
    env = os.environ.get("BROWSER_PATH")
    if env:
        if _is_executable_file(env):
            return env
        raise ExportError(
            f"BROWSER_PATH={env!r} is not an executable file. Point BROWSER_PATH at a "
            "Chromium or Chrome executable, or unset it and install Debian's Chromium "
            "with `apt-get install chromium` (/usr/bin/chromium)."
        )
    for candidate in _BROWSER_CANDIDATES:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and _is_executable_file(path):
            return path
    raise ExportError(
        "No Chromium/Chrome browser found for figure export (kaleido >= 1 renders "
        "through one). Install Debian's Chromium with `apt-get install chromium`, or "
        "set BROWSER_PATH to a Chromium/Chrome executable. Looked for: "
        + ", ".join(_BROWSER_CANDIDATES)
    )


# ---------------------------------------------------------------------------
# the shared browser session
# ---------------------------------------------------------------------------


def _browser_gone_errors() -> tuple[type[BaseException], ...]:
    from choreographer.errors import BrowserClosedError, BrowserFailedError, ChannelClosedError

    return (BrowserClosedError, BrowserFailedError, ChannelClosedError)


class _BrowserGone(Exception):
    """The browser stopped answering; a fresh one may succeed."""


class _BrowserSession:
    """One headless Chromium driven by a ``kaleido.Kaleido`` on its own event loop.

    Kaleido is asyncio-based; a dedicated loop thread lets synchronous callers
    (scripts, Streamlit's worker threads) share one long-lived browser and wait
    with timeouts, which kaleido's own global sync server does not offer (a
    browser that fails to start there leaves callers blocked forever).
    """

    def __init__(self, browser_path: str, render_timeout: float = RENDER_TIMEOUT_S) -> None:
        try:
            import kaleido
        except ImportError as e:
            raise ExportError("figure export needs kaleido >= 1 (pip install 'kaleido>=1')") from e
        if not hasattr(kaleido, "Kaleido"):
            raise ExportError(f"figure export needs kaleido >= 1, found {getattr(kaleido, '__version__', '?')}")
        self.browser_path = browser_path
        self.render_timeout = render_timeout
        self._kaleido: Any = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kaleido-export", daemon=True)
        self._thread.start()
        try:
            self._call(self._open(kaleido), START_TIMEOUT_S)
        except BaseException as e:
            self.close()
            if isinstance(e, ExportError):
                raise
            raise ExportError(f"could not start the browser at {browser_path!r} for export: {e}") from e

    async def _open(self, kaleido: Any) -> None:
        k = kaleido.Kaleido(path=self.browser_path, mathjax=False, timeout=self.render_timeout)
        try:
            await k.open()
        except BaseException:
            try:
                await k.close()
            except Exception:  # noqa: BLE001 - already failing; the original error matters
                pass
            raise
        self._kaleido = k

    def _call(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _BrowserGone(f"no answer from the browser within {timeout:.0f} s") from None

    @property
    def alive(self) -> bool:
        proc = getattr(self._kaleido, "subprocess", None)
        return self._thread.is_alive() and proc is not None and proc.poll() is None

    def render(self, fig: dict[str, Any], opts: dict[str, Any]) -> bytes:
        try:
            return self._call(self._kaleido.calc_fig(fig, opts=opts), self.render_timeout + 15.0)
        except _browser_gone_errors() as e:
            raise _BrowserGone(str(e)) from e

    @staticmethod
    async def _cancel_leftover_tasks() -> None:
        # A browser that died leaves choreographer's watchdog and reader tasks
        # pending; cancel them so the loop closes without "Task was destroyed".
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self._kaleido is not None and self._thread.is_alive():
            try:
                self._call(self._kaleido.close(), 15.0)
            except Exception:  # noqa: BLE001 - best effort: the browser may already be gone
                pass
        self._kaleido = None
        if self._thread.is_alive():
            try:
                self._call(self._cancel_leftover_tasks(), 5.0)
            except Exception:  # noqa: BLE001 - best effort, as above
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


_session: _BrowserSession | None = None
# One lock for creating, using and closing the session: kaleido is opened with a
# single tab, so renders are serial anyway, and this keeps a render from racing a
# restart in another thread.
_session_lock = threading.RLock()


def close_browser() -> None:
    """Shut down the shared export browser (a later export starts a new one)."""
    global _session
    with _session_lock:
        if _session is not None:
            _session.close()
            _session = None


atexit.register(close_browser)


def _render(fig: Any, fmt: str, width: float | None, height: float | None, scale: float | None) -> bytes:
    fmt = fmt.lower().lstrip(".")
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported figure format {fmt!r}; use one of {SUPPORTED_FORMATS}")
    if hasattr(fig, "to_dict"):
        fig_dict = fig.to_dict()
    elif isinstance(fig, dict) and "data" in fig:
        fig_dict = fig
    else:
        raise TypeError(f"expected a plotly figure or figure dict, got {type(fig).__name__}")
    layout = fig_dict.get("layout", {})
    opts: dict[str, Any] = {"format": fmt}
    width = width if width is not None else layout.get("width")
    height = height if height is not None else layout.get("height")
    if width is not None:
        opts["width"] = width
    if height is not None:
        opts["height"] = height
    # Kaleido sizes a PDF page as width×scale px, so any scale but 1 would change
    # the printed size of a vector figure; scale only means resolution for PNG.
    opts["scale"] = (DEFAULT_PNG_SCALE if scale is None else scale) if fmt == "png" else 1

    global _session
    browser = find_browser()
    with _session_lock:
        for attempt in range(2):
            if _session is not None and (_session.browser_path != browser or not _session.alive):
                close_browser()
            if _session is None:
                _session = _BrowserSession(browser)
            try:
                data = _session.render(fig_dict, opts)
            except _BrowserGone as e:
                close_browser()
                if attempt:
                    raise ExportError(f"the browser at {browser!r} failed while exporting: {e}") from e
                continue
            except Exception as e:  # noqa: BLE001 - kaleido/plotly.js errors vary by version
                raise ExportError(f"kaleido could not render the figure as {fmt}: {e}") from e
            return data if isinstance(data, bytes) else str(data).encode()
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# paper-ready files
# ---------------------------------------------------------------------------


def figure_title(fig: Any, default: str = "cascade figure") -> str:
    """The figure's own title text (markup stripped), else ``default``."""
    layout = fig.to_dict().get("layout", {}) if hasattr(fig, "to_dict") else (fig or {}).get("layout", {})
    title = layout.get("title")
    text = title.get("text") if isinstance(title, dict) else title
    if not text:
        return default
    return re.sub(r"<[^>]+>", " ", str(text)).strip() or default


def png_with_dpi(data: bytes, dpi: float) -> bytes:
    """The PNG re-saved with its resolution recorded (``pHYs``), pixels unchanged."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        out = io.BytesIO()
        im.save(out, "PNG", dpi=(float(dpi), float(dpi)))
    return out.getvalue()


def pdf_with_title(data: bytes, title: str) -> bytes:
    """The PDF with its document title (and creator) set; pages unchanged."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.add_metadata({"/Title": title, "/Creator": PDF_CREATOR})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _finish(data: bytes, fig: Any, fmt: str, dpi: float, title: str | None) -> bytes:
    if fmt == "png":
        return png_with_dpi(data, dpi)
    if fmt == "pdf":
        return pdf_with_title(data, title or figure_title(fig))
    return data


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


_atomic_write = atomic_write_bytes


def figure_bytes(
    fig: Any,
    fmt: str,
    width: float | None = None,
    height: float | None = None,
    scale: float | None = None,
    *,
    dpi: float | None = None,
    title: str | None = None,
) -> bytes:
    """Render a plotly figure to PDF, SVG or PNG bytes (e.g. for a download button).

    Args:
        fig: plotly figure or figure dict.
        fmt: ``"pdf"``, ``"svg"`` or ``"png"``.
        width, height: size in CSS px (96 px = 1 in); default the figure's
            layout size, else kaleido's 700×500.
        scale: PNG resolution multiplier; default ``dpi / 96``. Ignored for
            PDF/SVG, whose size it would distort.
        dpi: PNG resolution at the figure's physical size, recorded in the file
            (default 300; with ``scale`` given, ``96 · scale``).
        title: the PDF's document title (default the figure's title, else
            "cascade figure").

    Raises:
        ValueError: unsupported format or a non-positive dpi.
        ExportError: no browser, the browser failed, or kaleido rejected the figure.
    """
    fmt = fmt.lower().lstrip(".")
    if dpi is not None and dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    if scale is None:
        dpi = float(dpi or DEFAULT_DPI)
        scale = dpi / CSS_PX_PER_INCH
    else:
        dpi = float(dpi or scale * CSS_PX_PER_INCH)
    return _finish(_render(fig, fmt, width, height, scale), fig, fmt, dpi, title)


def export_figure(
    fig: Any,
    path: str | os.PathLike[str],
    width: float | None = None,
    height: float | None = None,
    scale: float | None = None,
    *,
    dpi: float | None = None,
    title: str | None = None,
) -> Path:
    """Write ``fig`` to ``path`` atomically, as PDF, SVG or PNG by the file's extension.

    Sizes, ``dpi``, ``title`` and errors as for :func:`figure_bytes`; parent
    folders are created. A PDF's page is exactly width × height px at 96 px per
    inch (e.g. 336 px = 3.5 in = 252 pt).  Returns the path written.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"cannot infer a figure format from {path.name!r}; use .pdf, .svg or .png")
    _atomic_write(path, figure_bytes(fig, fmt, width, height, scale, dpi=dpi, title=title))
    return path


def export_matrix(
    matrix: Any,
    labels_row: Sequence[str],
    labels_col: Sequence[str],
    path_stem: str | os.PathLike[str],
) -> tuple[Path, Path]:
    """Write a labelled matrix as ``<stem>.csv`` and ``<stem>.npz`` beside a figure.

    The CSV has the column labels as its header (first cell empty) and each row
    starting with its label; values are written with 17 significant digits so
    they read back bit-identical.  The NPZ holds ``matrix`` (float64) and the
    string arrays ``labels_row`` and ``labels_col`` (loadable without pickle).

    Args:
        matrix: 2-D torch tensor or array-like [R, C].
        labels_row: R row labels.
        labels_col: C column labels.
        path_stem: target path without extension; ``.csv``/``.npz`` are appended.

    Returns:
        (csv_path, npz_path)
    """
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().cpu().numpy()
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {values.shape}")
    rows, cols = [str(x) for x in labels_row], [str(x) for x in labels_col]
    if (len(rows), len(cols)) != values.shape:
        raise ValueError(
            f"labels ({len(rows)} rows, {len(cols)} columns) do not match the matrix shape {values.shape}"
        )
    stem = os.fspath(path_stem)
    csv_path, npz_path = Path(stem + ".csv"), Path(stem + ".npz")

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["", *cols])
    for label, row in zip(rows, values):
        writer.writerow([label, *(format(v, ".17g") for v in row)])
    _atomic_write(csv_path, text.getvalue().encode("utf-8"))

    buffer = io.BytesIO()
    np.savez(buffer, matrix=values, labels_row=np.array(rows, dtype=str), labels_col=np.array(cols, dtype=str))
    _atomic_write(npz_path, buffer.getvalue())
    return csv_path, npz_path
