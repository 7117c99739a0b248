"""Whether a Chromium that kaleido can drive is present (CI installs Debian's)."""
import pytest


def has_browser() -> bool:
    try:
        from analysis.export import find_browser

        find_browser()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable browser
        return False


needs_browser = pytest.mark.skipif(not has_browser(), reason="no Chromium for kaleido")
