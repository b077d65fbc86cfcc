"""The catalogue site in a real browser: Debian's Chromium, headless, driven by Playwright.

A person opens the index, follows a server, a tool and an attack, filters a server's
tools and searches; every page is visited, every link it shows leads to a page of the
site, nothing is fetched from anywhere but the site, no script fails, and nothing is
wider than a phone's screen. Screenshots of three pages are kept in ARTIFACTS.

Chromium comes from Debian (``apt-get install chromium``; `.ci/run` installs it). Where
it is absent the tests skip and say so, unless MCPWALL_REQUIRE_BROWSER is set, as CI
sets it: there a missing browser is a failure, never a silent skip.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mcpwall.catalog.attacks import attacks
from mcpwall.catalog.entries import find_server, servers
from mcpwall.catalog.site import write_site

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("MCPWALL_ARTIFACTS", "artifacts")) / "site"
# Flags for a machine whose network is closed: Chromium's own background traffic
# (updates, sync, field trials) would otherwise be refused over and over.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
KUBERNETES = find_server("kubernetes")
# How far the page reaches past the screen's right edge (what a sideways scroll shows).
WIDER_THAN_THE_SCREEN = (
    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("site")
    write_site(directory)
    return directory


@pytest.fixture(scope="module")
def origin(site: Path) -> Iterator[str]:
    """The site served as a plain web server serves files, on a port of loopback."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Traffic:
    """What the pages asked for beyond the site, and what their scripts threw."""

    elsewhere: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright.Browser]:
    if not Path(CHROMIUM).is_file():
        reason = f"no Chromium at {CHROMIUM}: apt-get install chromium"
        if os.environ.get("MCPWALL_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


def _context(
    browser: playwright.Browser, origin: str, traffic: Traffic, viewport: dict[str, int]
) -> playwright.BrowserContext:
    context = browser.new_context(viewport=viewport)

    def record(request: playwright.Request) -> None:
        if not request.url.startswith(origin + "/"):
            traffic.elsewhere.append(request.url)

    context.on("request", record)
    return context


@pytest.fixture
def page(browser: playwright.Browser, origin: str, traffic: Traffic) -> Iterator[playwright.Page]:
    context = _context(browser, origin, traffic, DESKTOP)
    opened = context.new_page()
    _watch(opened, traffic)
    yield opened
    context.close()
    assert traffic.elsewhere == [] and traffic.missing == [] and traffic.errors == [], traffic


def _watch(opened: playwright.Page, traffic: Traffic) -> None:
    opened.on("pageerror", lambda error: traffic.errors.append(str(error)))
    opened.on(
        "response",
        lambda response: traffic.missing.append(response.url) if response.status >= 400 else None,
    )


def test_index_server_tool_attack_as_a_person_follows_them(
    page: playwright.Page, origin: str
) -> None:
    page.goto(f"{origin}/index.html")
    assert page.locator("h1").inner_text() == "The mcpwall catalogue"
    servers_table = page.locator("main table").first
    assert servers_table.locator("tbody tr").count() == len(servers())

    page.get_by_role("link", name=KUBERNETES.title, exact=True).click()
    page.wait_for_url("**/servers/kubernetes-mcp-server/index.html")
    assert page.locator("h1").inner_text() == f"{KUBERNETES.title} ({KUBERNETES.version})"
    tools = page.locator("table:has(th:text-is('toolset')) tbody tr")
    assert tools.count() == len(KUBERNETES.tools)
    assert page.get_by_role("link", name="Download the ready policy").first.is_visible()

    page.get_by_role("link", name="vm_clone", exact=True).click()
    page.wait_for_url("**/tools/vm_clone.html")
    assert page.locator("h1").inner_text() == "vm_clone: Write / Medium"
    body = page.locator("main").inner_text()
    assert "Other Write tools across the catalogue" in body
    assert f"all {len(KUBERNETES.tools)} of its tools" in body
    crumbs = page.locator("nav.crumbs").inner_text()
    assert crumbs.split(" \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} ") == [
        "Catalogue",
        KUBERNETES.title,
        "vm_clone",
    ]

    rug_pull = next(a for a in attacks() if a.id == "rug-pull")
    page.locator("main a", has_text="rug-pull").first.click()
    page.wait_for_url("**/attacks/rug-pull.html")
    assert page.locator("h1").inner_text() == f"{rug_pull.title} (rug-pull)"
    body = page.locator("main").inner_text()
    assert "Prevention" in body and rug_pull.test in body
    # The attack page leads back to the tool it was reached from.
    back = page.locator("main a", has_text="vm_clone").first
    assert back.get_attribute("href") == "../servers/kubernetes-mcp-server/tools/vm_clone.html"


def test_filters_show_only_the_tools_that_fit(page: playwright.Page, origin: str) -> None:
    page.goto(f"{origin}/servers/kubernetes-mcp-server/index.html")
    rows = page.locator("table:has(th:text-is('toolset')) tbody tr")
    total = len(KUBERNETES.tools)
    counts = Counter((t.category.value, t.risk.value) for t in KUBERNETES.tools.values())
    by_category = Counter(t.category.value for t in KUBERNETES.tools.values())
    assert page.locator("#filter-count").inner_text() == f"{total} of {total} tools"

    page.select_option("#filter-category", "Read")
    shown = rows.locator("visible=true")
    assert page.locator("#filter-count").inner_text() == f"{by_category['Read']} of {total} tools"
    assert shown.count() == by_category["Read"]
    assert set(shown.locator("td:nth-child(3)").all_inner_texts()) == {"Read"}

    page.select_option("#filter-risk", "High")
    assert shown.count() == counts[("Read", "High")]
    assert set(shown.locator("td:nth-child(4)").all_inner_texts()) <= {"High"}

    page.select_option("#filter-category", "all")
    page.select_option("#filter-risk", "Critical")
    critical = sum(n for (_, risk), n in counts.items() if risk == "Critical")
    assert critical and shown.count() == critical

    page.select_option("#filter-risk", "all")
    assert shown.count() == total


def test_the_search_box_finds_a_tool_and_goes_to_it(page: playwright.Page, origin: str) -> None:
    page.goto(f"{origin}/attacks/index.html")
    page.fill("#search", "vm_clone")
    first = page.locator("#search-results a").first
    first.wait_for()
    assert "vm_clone" in first.inner_text()
    page.press("#search", "Enter")
    page.wait_for_url("**/servers/kubernetes-mcp-server/tools/vm_clone.html")

    page.fill("#search", "no tool is called this")
    assert page.locator("#search-results").inner_text() == "Nothing matches."
    page.keyboard.press("Escape")
    assert page.locator("#search-results").is_hidden()


def test_the_site_works_from_a_file_with_no_server(browser: playwright.Browser, site: Path) -> None:
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto((site / "index.html").as_uri())
    opened.fill("#search", "rug pull")
    opened.locator("#search-results a").first.click()
    opened.wait_for_url("**/attacks/rug-pull.html")
    context.close()
    assert errors == []


def test_every_page_loads_fits_a_phone_and_every_link_leads_to_a_page(
    browser: playwright.Browser, origin: str, site: Path, traffic: Traffic
) -> None:
    """Each page is opened on a phone's screen and is no wider than it; each link it
    shows, as the browser resolves it, is a page or file of the site (or a plain link
    out, which is never fetched)."""
    context = _context(browser, origin, traffic, PHONE)
    page = context.new_page()
    _watch(page, traffic)
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    broken: list[tuple[str, str]] = []
    too_wide: list[tuple[str, int]] = []
    outside: set[str] = set()
    for file in files:
        page.goto(f"{origin}/{file}", wait_until="domcontentloaded")
        overflow = page.evaluate(WIDER_THAN_THE_SCREEN)
        if overflow > 0:
            too_wide.append((file, overflow))
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            target = urlsplit(href)
            if href.startswith(origin + "/"):
                path = unquote(target.path).lstrip("/")
                if not (site / path).is_file():
                    broken.append((file, href))
            elif target.scheme in ("http", "https"):
                outside.add(href)
            else:
                broken.append((file, href))
    context.close()
    assert broken == [] and too_wide == []
    assert traffic.elsewhere == [] and traffic.missing == [] and traffic.errors == [], traffic
    # The only links out are the servers' projects and the attacks' references.
    assert all(link.startswith("https://") for link in outside), sorted(outside)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_three_pages_as_a_person_sees_them(
    browser: playwright.Browser, origin: str, traffic: Traffic, viewport: dict[str, int]
) -> None:
    context = _context(browser, origin, traffic, viewport)
    opened = context.new_page()
    _watch(opened, traffic)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    label = "phone" if viewport is PHONE else "desktop"
    for name, path in [
        ("index", "index.html"),
        ("server", "servers/kubernetes-mcp-server/index.html"),
        ("tool", "servers/kubernetes-mcp-server/tools/vm_clone.html"),
    ]:
        opened.goto(f"{origin}/{path}")
        assert opened.evaluate(WIDER_THAN_THE_SCREEN) <= 0, (label, path)
        opened.screenshot(path=str(ARTIFACTS / f"{label}-{name}.png"), full_page=True)
    context.close()
    assert traffic.elsewhere == [] and traffic.missing == [] and traffic.errors == [], traffic
