"""Checks of a self-contained HTML report (the audit export's): what a page links to and loads,
read from its markup (:class:`Page`) or from the DOM headless Chromium built (:func:`chromium_dom`)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

# Elements and attributes through which a page loads something.
LOADING_TAGS = {"script", "img", "iframe", "object", "embed", "link", "video", "audio", "source", "base"}
LOADING_ATTRIBUTES = {"src", "srcset", "action", "poster", "data", "background", "formaction"}


class Page(HTMLParser):
    """Ids, links, loaded resources, ``data-count`` values by id, and the text of style elements."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.loads: list[str] = []
        self.counts: dict[str, int] = {}
        self.tags: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        self._in_style = tag == "style"
        if tag in LOADING_TAGS:
            self.loads.append(f"<{tag}>")
        self.loads += [f"{tag} {name}={value}" for name, value in attrs if name in LOADING_ATTRIBUTES]
        self.loads += [f"{tag} style={v}" for n, v in attrs if n == "style" and v and "url(" in v]
        if found.get("id"):
            self.ids.append(str(found["id"]))
            if found.get("data-count") is not None:
                self.counts[str(found["id"])] = int(str(found["data-count"]))
        if tag == "a" and "href" in found:
            self.hrefs.append(str(found["href"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def problems(self) -> list[str]:
        """Why the page is not self-contained with resolving links ([] when it is)."""
        found = [f"loads {what}" for what in self.loads]
        found += [f"style loads {s.strip()[:60]!r}" for s in self.styles if "url(" in s or "@import" in s]
        found += [f"link {href!r} leaves the page" for href in self.hrefs if not href.startswith("#")]
        ids = set(self.ids)
        found += [f"link {h!r} has no element" for h in self.hrefs if h.startswith("#") and h[1:] not in ids]
        found += [f"id {i!r} is not unique" for i in sorted(ids) if self.ids.count(i) > 1]
        return found


def chromium_dom(page: Path) -> str:
    """The DOM headless Chromium builds from ``page`` (a file), serialised. Fails, naming
    ``make tools``, when Debian's chromium is not installed."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make tools` installs Debian's chromium package"
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"chromium failed on {page}: {done.stderr[-2000:]}"
    return done.stdout
