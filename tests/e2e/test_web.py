"""The web page in a real browser (Debian's Chromium, driven by Playwright) against a live
`assay serve` with the real engine, and once through nginx with services/frontend/nginx.conf.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from assay.web_frontend import STATIC_DIR
from tests.conftest import leftover_containers
from tests.e2e.test_crash_recovery import free_port, start_server
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
NO_VALUE = "\u2013"  # what the detail view shows for a fact it has no value for
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Live:
    url: str
    engine_id: str
    data_dir: Path


def wait_ready_sync(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not ready: {log.read_text()}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    directory = tmp_path_factory.mktemp("web")
    engine_id = f"{TEST_ENGINE_PREFIX}web-{uuid.uuid4().hex[:8]}"
    port = free_port()
    log = directory / "server.log"
    server = start_server(directory / "data", port, engine_id, log)
    try:
        wait_ready_sync(f"http://127.0.0.1:{port}", server, log)
        yield Live(f"http://127.0.0.1:{port}", engine_id, directory / "data")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert leftover_containers(engine_id) == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is missing: run `make test` (scripts/bootstrap --test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)  # not CI: a developer machine without chromium
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def type_program(page: Page, code: str) -> None:
    page.fill("#code", code)


def test_output_appears_live_before_the_program_finishes(live: Live, page: Page) -> None:
    page.goto(live.url)
    expect(page.locator("#connection")).to_have_class("connection live", timeout=15_000)
    type_program(
        page, "import time\nprint('first line', flush=True)\ntime.sleep(4)\nprint('second line')\n"
    )
    page.fill("#labels", "suite=web")
    page.locator("#code").press("Control+Enter")
    expect(page).to_have_url(re.compile(r"#/evaluations/[\w-]+$"))
    expect(page.locator("#d-stdout")).to_contain_text("first line", timeout=15_000)
    expect(page.locator("#d-status")).to_have_text("running")
    assert "second line" not in page.locator("#d-stdout").inner_text()
    expect(page.locator("#d-status")).to_have_text("completed", timeout=20_000)
    expect(page.locator("#d-stdout")).to_have_text("first line\nsecond line\n")
    expect(page.locator("#d-exit")).to_have_text("0")
    expect(page.locator("#d-events li[data-type=finished]")).to_have_count(1)
    expect(page.locator("#d-curl")).to_contain_text("curl -sS -X POST")
    shot(page, "detail-view")


def test_a_failing_program_shows_its_error_and_exit_code(live: Live, page: Page) -> None:
    page.goto(live.url)
    type_program(page, "import sys\nprint('something broke', file=sys.stderr)\nsys.exit(3)\n")
    page.click("#run")
    expect(page.locator("#d-status")).to_have_text("failed", timeout=20_000)
    expect(page.locator("#d-exit")).to_have_text("3")
    expect(page.locator("#d-stderr")).to_have_text("something broke\n")
    expect(page.locator("#d-cancel")).to_be_disabled()


def test_cancel_a_long_running_program(live: Live, page: Page) -> None:
    page.goto(live.url)
    type_program(page, "import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    page.fill("#timeout", "120")
    page.click("#run")
    expect(page.locator("#d-stdout")).to_contain_text("working", timeout=20_000)
    page.click("#d-cancel")
    expect(page.locator("#d-status")).to_have_text("cancelled", timeout=10_000)
    expect(page.locator("#d-events li[data-type=cancelled]")).to_have_count(1)


def test_program_output_is_never_rendered_as_html(live: Live, page: Page) -> None:
    probe = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    page.goto(live.url)
    type_program(page, f"import sys\nprint({probe!r})\nprint({probe!r}, file=sys.stderr)\n")
    page.fill("#labels", f"probe={probe[:40]}")
    page.click("#run")
    expect(page.locator("#d-status")).to_have_text("completed", timeout=20_000)
    expect(page.locator("#d-stdout")).to_have_text(probe + "\n")
    expect(page.locator("#d-stderr")).to_have_text(probe + "\n")
    for where in ("#d-stdout", "#d-stderr", "#evaluations"):
        assert page.locator(f"{where} script, {where} img, {where} b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_the_list_updates_by_itself(live: Live, page: Page) -> None:
    page.goto(live.url)
    expect(page.locator("#connection")).to_have_class("connection live", timeout=15_000)
    response = httpx.post(
        f"{live.url}/api/v1/evaluations",
        json={
            "code": "import time\ntime.sleep(1)\nprint('from the API')",
            "labels": {"via": "api"},
        },
    )
    evaluation_id = response.json()["id"]
    row = page.locator(f'#evaluations a[data-id="{evaluation_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator(".badge")).to_have_text("completed", timeout=20_000)
    expect(row).to_contain_text("via=api")
    page.select_option("#filter-status", "completed")
    expect(page.locator("#evaluations li[data-status=running]")).to_have_count(0)
    shot(page, "main-page")


def test_narrow_screen_in_the_dark_theme(live: Live, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    narrow = context.new_page()
    narrow.goto(live.url)
    assert narrow.evaluate("document.documentElement.dataset.theme") == "dark"
    expect(narrow.locator("#run")).to_be_visible()
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    controls = (
        "#language",
        "#code",
        "#stdin",
        "#compiler-options",
        "#args",
        "#timeout",
        "#memory",
        "#runs",
        "#isolation",
        "#filter-status",
    )
    for control in controls:
        assert narrow.locator(control).evaluate(
            "e => Boolean(e.labels?.length || e.getAttribute('aria-label'))"
        ), f"{control} has no accessible label"
    shot(narrow, "main-page-narrow-dark")
    context.close()


def render_nginx_conf(directory: Path, listen: int, platform: str) -> Path:
    template = string.Template((ROOT / "services/frontend/nginx.conf").read_text())
    runtime = directory / "nginx"
    runtime.mkdir()
    conf = runtime / "nginx.conf"
    conf.write_text(
        # As envsubst with a variable list does in the image: nginx's own $uri etc. stay.
        template.safe_substitute(
            ASSAY_LISTEN=f"127.0.0.1:{listen}",
            ASSAY_STATIC_ROOT=str(STATIC_DIR),
            ASSAY_PLATFORM=platform,
            ASSAY_NGINX_PREFIX=str(runtime),
        )
    )
    return conf


def test_the_page_works_through_nginx(live: Live, page: Page, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is missing: run `make test` (scripts/bootstrap --test)"
    port = free_port()
    conf = render_nginx_conf(tmp_path, port, live.url.removeprefix("http://"))
    process = subprocess.Popen([nginx, "-c", str(conf), "-g", "daemon off;"])
    try:
        proxied = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{proxied}/api/v1/queue", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        page.goto(proxied)
        expect(page.locator("#connection")).to_have_class("connection live", timeout=15_000)
        type_program(
            page, "import time\nprint('via nginx', flush=True)\ntime.sleep(3)\nprint('end')\n"
        )
        page.locator("#code").press("Control+Enter")
        expect(page.locator("#d-stdout")).to_contain_text("via nginx", timeout=15_000)
        expect(page.locator("#d-status")).to_have_text("running")
        expect(page.locator("#d-status")).to_have_text("completed", timeout=20_000)
        headers = httpx.get(proxied).headers
        assert "default-src 'self'" in headers["content-security-policy"]
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown: the page holds SSE streams open
        process.wait(timeout=10)


def test_upload_several_files_as_one_batch(live: Live, page: Page, tmp_path: Path) -> None:
    names = []
    for index in range(3):
        path = tmp_path / f"solution_{index}.py"
        path.write_text(f"print('solution {index}')\n")
        names.append(str(path))
    page.goto(live.url)
    page.select_option("#isolation", "batch")
    page.set_input_files("#files", names)
    expect(page.locator("#submit-status")).to_have_text("Queued 3 evaluations.", timeout=10_000)
    for index in range(3):
        row = page.locator(f'#evaluations a:has-text("file=solution_{index}.py")')
        expect(row.locator(".badge")).to_have_text("completed", timeout=30_000)
    listed = httpx.get(f"{live.url}/api/v1/evaluations", params={"limit": 3}).json()["items"]
    assert {e["isolation"] for e in listed} == {"batch"}
    assert len({e["batch_id"] for e in listed}) == 1


def shown_evaluation(live: Live, page: Page) -> dict[str, Any]:
    """The evaluation the detail view shows, as the API has it."""
    evaluation_id = page.url.rsplit("/", 1)[-1]
    return httpx.get(f"{live.url}/api/v1/evaluations/{evaluation_id}").json()


def test_the_language_selector_loads_each_languages_example(live: Live, page: Page) -> None:
    languages = httpx.get(f"{live.url}/api/v1/languages").json()["languages"]
    labels = {
        language["name"]: " ".join(filter(None, (language["title"], language["version"])))
        for language in languages
    }
    examples = {language["name"]: language["example"] for language in languages}
    page.goto(live.url)
    expect(page.locator("#language option")).to_have_text(list(labels.values()))
    expect(page.locator("#language")).to_have_value("python")
    expect(page.locator("#compiler-options")).to_be_disabled()
    page.select_option("#language", label=labels["c"])
    expect(page.locator("#code")).to_have_value(examples["c"])
    expect(page.locator("#code")).to_have_attribute("aria-label", re.compile(r"^C \(gcc\) code"))
    expect(page.locator("#compiler-options")).to_be_enabled()
    page.click("#run")
    expect(page.locator("#d-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#d-stdout")).to_have_text("Hello, world!\n")
    expect(page.locator("#d-language")).to_have_text("C (gcc)")
    expect(page.locator("#d-compile-duration")).to_have_text(re.compile(r"\d+(\.\d+)? m?s$"))
    expect(page.locator("#d-compile-block")).to_be_hidden()  # gcc wrote nothing
    assert shown_evaluation(live, page)["request"]["language"] == "c"
    # An example gives way to the next language's; the user's own code never does.
    page.select_option("#language", "rust")
    expect(page.locator("#code")).to_have_value(examples["rust"])
    type_program(page, 'fn main() { println!("mine"); }\n')
    page.select_option("#language", "go")
    expect(page.locator("#code")).to_have_value('fn main() { println!("mine"); }\n')
    shot(page, "language-c")


def test_a_compile_error_shows_the_compilers_message(live: Live, page: Page) -> None:
    probe = '<b>bold</b><img src=x onerror="window.__pwned = 1">'
    page.goto(live.url)
    page.select_option("#language", "c")
    type_program(page, f"int main(void) {{\n    return 0 /* {probe} */\n}}\n")
    page.fill("#compiler-options", "-Wall  -O1")
    page.click("#run")
    expect(page.locator("#d-status")).to_have_text("compile error", timeout=30_000)
    expect(page.locator("#d-status")).to_have_class("badge compile_error")
    block = page.locator("#d-compile-block")
    expect(block).to_be_visible()
    expect(block.locator("h3")).to_contain_text("Compiler output")
    expect(page.locator("#d-compile")).to_contain_text("main.c:2")
    expect(page.locator("#d-compile")).to_contain_text("error:")
    expect(page.locator("#d-compile")).to_contain_text(probe)  # gcc quotes the line
    assert page.locator("#d-compile *").count() == 0
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("#d-duration")).to_have_text(NO_VALUE)  # it never ran
    expect(page.locator("#d-compile-duration")).not_to_have_text(NO_VALUE)
    evaluation = shown_evaluation(live, page)
    assert evaluation["status"] == "compile_error"
    assert evaluation["request"]["compiler_options"] == ["-Wall", "-O1"]
    row = page.locator(f'#evaluations a[data-id="{evaluation["id"]}"]')
    expect(row.locator(".badge")).to_have_text("compile error")
    shot(page, "compile-error")


def test_program_arguments_reach_the_program(live: Live, page: Page) -> None:
    page.goto(live.url)
    page.select_option("#language", "c")
    page.fill("#compiler-options", "-O2")  # not for bash: not sent
    page.select_option("#language", "bash")
    expect(page.locator("#compiler-options")).to_be_disabled()
    type_program(page, 'echo "$@"\nprintf "[%s]\\n" "$@"\n')
    page.fill("#args", "  one two\tthree ")
    page.click("#run")
    expect(page.locator("#d-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#d-stdout")).to_have_text("one two three\n[one]\n[two]\n[three]\n")
    expect(page.locator("#d-compile-block")).to_be_hidden()
    request = shown_evaluation(live, page)["request"]
    assert (request["language"], request["args"]) == ("bash", ["one", "two", "three"])
    assert request["compiler_options"] == []


def test_uploaded_files_run_in_the_language_of_their_names(
    live: Live, page: Page, tmp_path: Path
) -> None:
    programs = {
        "greet.sh": ('echo "bash says $1"\n', "bash"),
        "greet.c": (
            '#include <stdio.h>\nint main(int c, char **v) { printf("c says %s\\n", v[1]); }\n',
            "c",
        ),
        "greet.txt": ("import sys\nprint('python says', sys.argv[1])\n", "python"),  # no match
    }
    for name, (code, _) in programs.items():
        (tmp_path / name).write_text(code)
    page.goto(live.url)
    expect(page.locator("#language option")).not_to_have_count(1)
    page.fill("#args", "hi")
    page.set_input_files("#files", [str(tmp_path / name) for name in programs])
    expect(page.locator("#submit-status")).to_have_text("Queued 3 evaluations.", timeout=10_000)
    for name, (_, language) in programs.items():
        row = page.locator(f'#evaluations a:has-text("file={name}")')
        expect(row.locator(".badge")).to_have_text("completed", timeout=30_000)
        evaluation_id = row.get_attribute("data-id")
        evaluation = httpx.get(f"{live.url}/api/v1/evaluations/{evaluation_id}").json()
        assert evaluation["request"]["language"] == language
        assert evaluation["stdout"] == f"{language} says hi\n"


def test_the_page_asks_for_an_api_key_when_the_server_needs_one(
    browser: Browser, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "ASSAY_DATA_DIR": str(data)}
    created = subprocess.run(
        [sys.executable, "-m", "assay", "keys", "create", "browser"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = created.stdout.strip()
    engine_id = f"{TEST_ENGINE_PREFIX}web-key-{uuid.uuid4().hex[:8]}"
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(data, port, engine_id, log)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready_sync(url, server, log)
        page = context.new_page()
        page.goto(url)
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible(timeout=10_000)
        page.fill("#key-input", secret)
        page.click("#key-save")
        expect(dialog).to_be_hidden()
        expect(page.locator("#connection")).to_have_class("connection live", timeout=15_000)
        page.fill("#code", "print('with a key')")
        page.click("#run")
        expect(page.locator("#d-stdout")).to_have_text("with a key\n", timeout=20_000)
        assert page.evaluate("localStorage.getItem('assay.apiKey')") == secret
    finally:
        context.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
