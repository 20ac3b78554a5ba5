"""The labeling page in a real browser: Debian's chromium driven by Selenium through the system
chromedriver. Alice labels a batch by keyboard (one face unusable, then undone), uses the grid;
Bob gets the paired face blind and disagrees; Rita settles it in the review view; the store
must say exactly that. With ALFACE_SCREENSHOTS=DIR each view is saved there as a PNG (the
pictures of docs/LABELING.md: ALFACE_SCREENSHOTS=docs/img)."""

import os
import threading
import time
from pathlib import Path

import pytest
from labelpage import make_page_workdir

from alface.web.app import create_app
from alface.workdir import Workdir

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,960")  # fmt: skip


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    why = f"no {', '.join(missing)}: apt-get install chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true requires the browser tests)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    """The page of a work dir with 5 faces (the second, from a video, paired) on a free port."""
    import socket

    import uvicorn

    wd, ids = make_page_workdir(tmp_path / "wd", n=5, paired=(1,))
    wd.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(tmp_path / "wd"), host="127.0.0.1",
                                        port=port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", tmp_path / "wd", ids
    srv.should_exit = True
    thread.join()


class Page:
    """A browser on the labeling page: keys, clicks, the face shown, screenshots."""

    def __init__(self, driver, base: str) -> None:
        self.d, self.base = driver, base
        self.shots = os.environ.get("ALFACE_SCREENSHOTS")

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def _after(self, action) -> None:
        """Run ``action`` and wait for the page it loads, pictures included."""
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.d.find_element("tag name", "html")
        action()
        WebDriverWait(self.d, 10).until(ec.staleness_of(old))
        WebDriverWait(self.d, 10).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
        ))  # fmt: skip

    def key(self, key: str) -> None:
        """Press ``key`` as a person would (the page's shortcut)."""
        from selenium.webdriver.common.action_chains import ActionChains

        self._after(lambda: ActionChains(self.d).send_keys(key).perform())

    def click(self, css: str) -> None:
        self._after(lambda: self.d.find_element("css selector", css).click())

    def sign_in(self, name: str) -> None:
        self.d.delete_all_cookies()
        self.go("/login")
        self.shot("login")
        field = self.d.find_element("name", "name")
        self._after(lambda: field.send_keys(name + "\n"))

    def face(self) -> int | None:
        """The item id of the face on screen (None: no face)."""
        found = self.d.find_elements("css selector", "form.answers input[name=item]")
        return int(found[0].get_attribute("value")) if found else None

    def text(self) -> str:
        return self.d.find_element("tag name", "body").text

    def shot(self, name: str) -> None:
        if self.shots:
            Path(self.shots).mkdir(parents=True, exist_ok=True)
            self.d.save_screenshot(str(Path(self.shots) / f"label_page_{name}.png"))


def test_label_by_keyboard_unusable_undo_pairs_review(browser, server):
    base, root, ids = server
    p = Page(browser, base)
    started = time.time()
    # Alice: a batch by keyboard
    p.sign_in("alice")
    assert p.face() == ids[0] and "Model's guess: White" in p.text()
    p.shot("label")
    p.key("1")  # White
    assert p.face() == ids[1] and "Model's guess" not in p.text()  # a pair: no guess
    p.key("u")  # unusable ...
    assert p.face() == ids[2]
    p.key("z")  # ... undone: the same face again, without an answer
    assert p.face() == ids[1] and "Your answer" not in p.text()
    p.key("3")  # Asian
    assert p.face() == ids[2]
    p.key("2")  # Black
    p.key("b")  # back: my answer shown, changed by a key
    assert p.face() == ids[2] and "Your answer: Black" in p.text()
    p.key("4")  # Indian
    # the grid for the rest: pick Others (5), click a face
    p.key("g")
    p.key("5")
    p.shot("grid")
    tiles = browser.find_elements("css selector", "button.tile")
    assert [int(t.get_attribute("value")) for t in tiles] == ids[3:]
    p.click(f"button.tile[value='{ids[3]}']")
    p.key("l")
    assert p.face() == ids[4]
    p.key("u")  # unusable, kept
    assert p.face() is None and "Nothing left for you" in p.text()
    assert "wait for a second annotator" in p.text()
    p.shot("done")
    # Bob: the paired face, blind (no sign of Alice's answer), and he disagrees
    p.sign_in("bob")
    assert p.face() == ids[1] and "alice" not in p.text() and "Your answer" not in p.text()
    assert "frame\n5 (0:00.5)" in p.text()  # where the video face came from
    p.shot("pair")
    p.key("5")  # Others
    assert p.face() is None and "1 in the review queue" in p.text()
    # Rita: both labels side by side; her decision settles the face
    p.sign_in("rita")
    p.key("r")
    assert p.face() == ids[1]
    said = [e.text.split("\n") for e in browser.find_elements("css selector", ".said")]
    assert said == [["alice", "Asian"], ["bob", "Others"]]
    p.shot("review")
    p.key("3")  # Asian
    assert p.face() is None and "review queue is empty" in p.text()
    # the store says exactly what was pressed
    wd = Workdir.open(root)
    store = wd.store
    current = {(a.item_id, a.annotator, a.kind): a.label for a in store.labels.annotations()}
    assert current == {
        (ids[0], "alice", "label"): "White", (ids[1], "alice", "label"): "Asian",
        (ids[2], "alice", "label"): "Indian", (ids[3], "alice", "label"): "Others",
        (ids[4], "alice", "label"): "unusable", (ids[1], "bob", "label"): "Others",
        (ids[1], "rita", "review"): "Asian",
    }  # fmt: skip
    assert store.labels.resolved() == {ids[0]: "White", ids[1]: "Asian", ids[2]: "Indian",
                                       ids[3]: "Others"}  # fmt: skip
    assert store.labels.rule_of(ids[1]) == ("Asian", "review")
    assert store.labels.unusable() == [ids[4]] and store.items.get([ids[4]])[0].split == "unusable"
    assert store.runs.pending_items(store.runs.open_batches()[0].id) == []
    withdrawn = [a for a in store.labels.annotations(current=False) if a.withdrawn]
    assert [(a.item_id, a.label) for a in withdrawn] == [(ids[1], "unusable")]
    wd.close()
    assert time.time() - started < 60
