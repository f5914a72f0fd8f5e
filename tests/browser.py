"""Browser tests drive Debian's chromium with Playwright; Playwright never downloads a browser.

scripts/test.sh installs chromium with apt-get when it is missing and it can; where it cannot, the
browser tests are skipped with a loud message (on stderr and as the skip reason)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ARTEFACTS = Path(os.environ.get("CONVSCOPE_TEST_ARTEFACTS", "test-artefacts"))


def chromium_path() -> str | None:
    for name in (os.environ.get("CONVSCOPE_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


def browser_or_skip():
    """A launched headless chromium (Playwright's sync API), or a loud skip."""
    path = chromium_path()
    if path is None:
        msg = (
            "BROWSER TESTS SKIPPED: no chromium on this machine (scripts/test.sh installs "
            "Debian's chromium with apt-get where it can)"
        )
        print(f"\n*** {msg} ***", file=sys.stderr)
        pytest.skip(msg)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
    return pw, browser


def screenshot(page, name: str) -> Path:
    """Save a screenshot as a test artefact (``$CONVSCOPE_TEST_ARTEFACTS``, default
    ``test-artefacts/``)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
