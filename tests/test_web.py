"""The labeling page over HTTP (Starlette's test client; the real browser is in
test_label_page_browser.py): sign-in, answers, undo and back, the grid, pairs, review, pictures,
and its safety (CSRF, Host, tokens, escaping); a killed server; two annotators and the loop."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from labelpage import CLASSES, csrf_of, make_page_workdir, shown_item
from labelstore import dump
from PIL import Image
from starlette.testclient import TestClient

from alface.cli import main
from alface.config import Config
from alface.web import auth
from alface.web.app import create_app
from alface.web.work import Leases
from alface.workdir import Workdir

BASE = "http://127.0.0.1:8765"


@pytest.fixture
def page(tmp_path):
    """(WORKDIR, item ids) with 6 faces in an open select batch, the third paired."""
    wd, ids = make_page_workdir(tmp_path / "wd", n=6, paired=(2,))
    wd.close()
    return tmp_path / "wd", ids


def _client(root, **kw) -> TestClient:
    return TestClient(create_app(root, **kw), base_url=BASE)


def _sign_in(c: TestClient, name: str) -> str:
    """Sign in by name; returns the first label page."""
    r = c.get("/login")
    r = c.post("/login", data={"name": name, "csrf": csrf_of(r.text)})
    assert r.status_code == 200 and r.url.path == "/label", r.text
    return r.text


def _answer(c: TestClient, html: str, answer: str, path: str = "/label") -> str:
    r = c.post(path, data={"item": shown_item(html), "answer": answer, "csrf": csrf_of(html)})
    assert r.status_code == 200, r.text
    return r.text


def _store(root):
    return Workdir.open(root).store


def test_label_one_face_at_a_time_with_undo_back_and_grid(page):
    root, ids = page
    with _client(root) as c:
        html = _sign_in(c, "alice")
        assert shown_item(html) == ids[0] and "Model's guess: <b>White</b>" in html
        html = _answer(c, html, "white")  # case does not matter
        assert shown_item(html) == ids[1]
        html = _answer(c, html, "unusable")
        assert shown_item(html) == ids[2]
        # undo: the last answer is taken back and its face shown again
        r = c.post("/undo", data={"csrf": csrf_of(html)})
        assert r.url.path == "/label" and shown_item(r.text) == ids[1]
        assert "Your answer" not in r.text
        html = _answer(c, r.text, "black")
        # back: the previous face with my answer, which I may change
        back = re.search(r'href="/label\?item=(\d+)"', html).group(1)
        r = c.get(f"/label?item={back}")
        assert shown_item(r.text) == ids[1] and "Your answer: <b>Black</b>" in r.text
        html = _answer(c, r.text, "asian")
        assert shown_item(html) == ids[2]
        # the grid: the brush's class for each clicked face
        r = c.get("/grid?brush=Indian")
        tiles = [int(x) for x in re.findall(r'name="item" value="(\d+)"', r.text)]
        assert tiles == ids[2:]
        r = c.post("/label", data={"item": tiles[1], "answer": "Indian", "view": "grid",
                                   "brush": "Indian", "csrf": csrf_of(r.text)})  # fmt: skip
        assert r.url.path == "/grid" and r.url.query == b"brush=Indian"
    store = _store(root)
    current = {(a.item_id, a.annotator): a.label for a in store.labels.annotations()}
    assert current == {(ids[0], "alice"): "White", (ids[1], "alice"): "Asian",
                       (ids[3], "alice"): "Indian"}  # fmt: skip
    assert store.labels.unusable() == [] and store.items.get([ids[1]])[0].split == "pool"
    every = store.labels.annotations(current=False)
    assert [a.withdrawn is not None for a in every if a.label == "unusable"] == [True]
    # one answer, one session (one transaction): 5 answers and 1 undo
    sessions = store.labels.sessions()
    assert [s.kind for s in sessions] == ["web"] * 6 and {s.annotator for s in sessions} == {
        "alice"
    }
    assert sorted(s.n_rows for s in sessions) == [1] * 6
    store.close()


def test_pairs_go_blind_to_a_second_annotator_and_guesses_follow_the_config(page, tmp_path):
    root, ids = page
    with _client(root) as c:
        html = _sign_in(c, "alice")
        for _ in range(3):
            html = _answer(c, html, "Black")
    with _client(root) as c:
        html = _sign_in(c, "bob")
        assert shown_item(html) == ids[2]  # the paired face, labeled once by alice
        assert "alice" not in html and "class chosen" not in html and 'class="guess"' not in html
        assert "Black" in html and "paired" in html
        html = _answer(c, html, "Asian")
        assert shown_item(html) == ids[3] and "Model's guess" in html
    store = _store(root)
    assert store.labels.review_queue() == [ids[2]] and ids[2] not in store.labels.resolved()
    store.close()
    with _client(
        root, overrides=["annotate.show_guess_pairs=true", "annotate.show_guess=false"]
    ) as c:
        html = _sign_in(c, "carol")
        assert shown_item(html) == ids[3] and 'class="guess"' not in html  # single: off now
    wd, itval = make_page_workdir(tmp_path / "it", n=4, paired=(1,), kind="itval")
    wd.close()
    with _client(tmp_path / "it", overrides=["annotate.show_guess_itval=true"]) as c:
        html = _sign_in(c, "dan")
        assert "Model's guess" in html  # itval, allowed by the config
        html = _answer(c, html, "White")
        assert shown_item(html) == itval[1] and 'class="guess"' not in html  # a pair: off
    with _client(tmp_path / "it") as c:
        _sign_in(c, "erin")
        html = c.get(f"/label?item={itval[2]}").text
        assert shown_item(html) == itval[2] and 'class="guess"' not in html  # itval: off


def test_review_shows_both_labels_and_the_decision_settles_the_face(page):
    root, ids = page
    with _client(root) as c:
        html = _sign_in(c, "alice")
        r = c.get(f"/label?item={ids[2]}")
        _answer(c, r.text, "White")
    with _client(root) as c:
        _sign_in(c, "bob")
        _answer(c, c.get(f"/label?item={ids[2]}").text, "unusable")
        r = c.get("/review")
        assert shown_item(r.text) == ids[2]
        said = re.findall(r'class="name">([^<]+)</span><b>([^<]+)</b>', r.text)
        assert said == [("alice", "White"), ("bob", "unusable")]
    with _client(root) as c:
        _sign_in(c, "rita")
        r = c.get("/review")
        html = _answer(c, r.text, "Indian", "/review")
        assert "review queue is empty" in html
    store = _store(root)
    assert store.labels.rule_of(ids[2]) == ("Indian", "review")
    assert store.labels.review_queue() == []
    (review,) = [a for a in store.labels.annotations([ids[2]]) if a.kind == "review"]
    assert review.annotator == "rita"
    store.close()


def test_every_post_needs_the_csrf_token_the_host_and_names_are_checked(page, tmp_path):
    root, ids = page
    store = _store(root)
    before = dump(store)
    with _client(root) as c:
        html = _sign_in(c, "alice")
        after_sign_in = dump(store)
        for data in ({"item": ids[0], "answer": "White"},
                     {"item": ids[0], "answer": "White", "csrf": "forged"}):  # fmt: skip
            r = c.post("/label", data=data)
            assert r.status_code == 403 and "CSRF" in r.text
        r = c.post("/label", data={"item": ids[0], "answer": "White", "csrf": csrf_of(html)},
                   headers={"Origin": "http://evil.example"})  # fmt: skip
        assert r.status_code == 403
        r = c.post("/label", data={"item": ids[0], "answer": "Whyte", "csrf": csrf_of(html)})
        assert r.status_code == 400 and "unknown class" in r.text
        assert dump(store) == after_sign_in
        r = c.get("/label", headers={"Host": "evil.example:8765"})  # DNS rebinding
        assert r.status_code == 400
    with _client(root) as c:
        r = c.get("/login")
        r = c.post("/login", data={"name": "<script>x</script>", "csrf": csrf_of(r.text)})
        assert r.status_code == 400 and "<script>x" not in r.text and "&lt;script&gt;" in r.text
    assert store.labels.annotator_names() == ["alice"] and before != after_sign_in
    store.close()
    # class names and guidelines are text, never markup
    guide = tmp_path / "g.md"
    guide.write_text("# Rules\n\n<img src=x onerror=alert(1)> be careful\n")
    cfg = Config().replace(
        "labels.classes=['<b>cat</b>', 'dog & co']", f"annotate.guidelines={guide}"
    )
    wd, _ = make_page_workdir(tmp_path / "esc", n=3, cfg=cfg)
    wd.close()
    with _client(tmp_path / "esc") as c:
        html = _sign_in(c, "alice")
        assert "&lt;b&gt;cat&lt;/b&gt;" in html and "<b>cat</b>" not in html
        assert "dog &amp; co" in html and "<img src=x" not in html and "&lt;img src=x" in html
        html = _answer(c, html, "<b>cat</b>")
    store = _store(tmp_path / "esc")
    assert [a.label for a in store.labels.annotations()] == ["<b>cat</b>"]
    store.close()


def test_pictures_only_by_item_id_of_faces_sent_to_people(page, tmp_path):
    root, ids = page
    wd = Workdir.open(root)
    with wd.store.transaction("test"):  # a face in the pool, in no batch
        from alface.store import NewItem

        (loose,) = wd.store.items.add([NewItem("crops/face_0.jpg", "f" * 40)], pool=2)
    wd.close()
    with _client(root) as c:
        assert c.get(f"/img/{ids[0]}/face").status_code == 403  # signed out
        _sign_in(c, "alice")
        r = c.get(f"/img/{ids[0]}/face")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content == (root / "crops/face_0.jpg").read_bytes()
        frame = Image.open(__import__("io").BytesIO(c.get(f"/img/{ids[0]}/frame").content))
        assert frame.size == (512, 512)  # the source photo, with the box drawn
        assert frame.getpixel((170, 100))[:2] > (200, 150)  # the box's amber line
        video = Image.open(__import__("io").BytesIO(c.get(f"/img/{ids[1]}/frame").content))
        assert video.size == (256, 256)  # frame 5 of the half-size clip
        for bad in (f"/img/{loose}/face", f"/img/{ids[3]}/frame", f"/img/{ids[0]}/source",
                    "/img/../../etc/passwd", "/img/abc/face", "/img/999999/face"):  # fmt: skip
            assert c.get(bad).status_code == 404, bad
        html = c.get(f"/label?item={ids[1]}").text
        assert "frame</dt><dd>5 (0:00.5)" in html and "clip.mp4" in html
        assert "Content-Security-Policy".lower() in c.get("/label").headers


def test_tokens_for_other_hosts(page, capsys):
    root, ids = page
    with socket.socket() as busy:  # a port in use: one line, not a traceback
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["label", str(root), "--port", str(busy.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1 port" in capsys.readouterr().err
    assert main(["label", str(root), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--add-annotator" in err and len(err.strip().splitlines()) == 1
    assert main(["label", str(root), "--host", "0.0.0.0", "--add-annotator", "bob"]) == 0
    link = capsys.readouterr().out.split()[-1]
    assert link.startswith("http://0.0.0.0:8765/login?token=")
    token = link.split("token=")[1]
    store = _store(root)
    assert store.labels.annotator_names(with_token=True) == ["bob"]
    assert token not in "\n".join(dump(store))  # only its hash is kept
    store.close()
    with _client(root, tokens_only=True, allowed_hosts=None) as c:
        assert c.get("/label").url.path == "/login"
        r = c.get("/login")
        assert "link you were given" in r.text
        secret = _store(root).get_meta("web_secret")
        csrf = auth.csrf_token(secret, c.cookies["alface_csrf"])  # a valid form, even so:
        r = c.post("/login", data={"name": "mallory", "csrf": csrf})
        assert r.status_code == 403 and "link you were given" in r.text
        assert c.get("/login?token=wrong").status_code == 403
        r = c.get(f"/login?token={token}")
        assert r.url.path == "/label" and "token" not in str(r.url) and shown_item(r.text)
        assert main(["label", str(root), "--add-annotator", "bob"]) == 0  # a new link ...
        assert c.get("/label").url.path == "/login"  # ... ends the old one's session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root, port):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "alface", "label", str(root), "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert "labeling page" in proc.stdout.readline()
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/login")
            return proc
        except httpx.ConnectError:
            time.sleep(0.05)
    raise AssertionError("the page did not start")


def _http_sign_in(c: httpx.Client, name: str) -> str:
    r = c.get("/login")
    r = c.post("/login", data={"name": name, "csrf": csrf_of(r.text)}, follow_redirects=True)
    return r.text


def test_a_killed_server_loses_only_the_face_on_screen(page):
    root, ids = page
    port = _free_port()
    proc = _serve(root, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as c:
        html = _http_sign_in(c, "alice")
        for answer in ("White", "Black"):
            html = c.post("/label", data={"item": shown_item(html), "answer": answer,
                                          "csrf": csrf_of(html)}).text  # fmt: skip
        assert shown_item(html) == ids[2]  # on screen, not answered
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = _serve(root, port)
        try:
            html = c.get("/label").text  # still signed in: the secret is in the store
            assert shown_item(html) == ids[2]
        finally:
            proc.terminate()
            proc.wait()
    store = _store(root)
    assert store.labels.resolved() == {ids[0]: "White", ids[1]: "Black"} and store.integrity_ok()
    store.close()


def test_leases_keep_two_people_off_one_face():
    now = [0.0]
    leases = Leases(seconds=10, clock=lambda: now[0])
    leases.take("alice", [1, 2])
    assert leases.held_by_others("bob") == {1, 2} and leases.held_by_others("alice") == set()
    leases.release("bob", 1)  # not bob's to release
    leases.release("alice", 1)
    assert leases.held_by_others("bob") == {2}
    now[0] = 11.0
    assert leases.held_by_others("bob") == set()  # a closed tab frees its faces


def test_two_annotators_and_the_loop_at_once_lose_and_double_no_label(tmp_path):
    """Two annotators answer every face they are given while `alface loop` polls: each answer
    is one current annotation, the pairs get both, and the loop closes the batch once."""
    import uvicorn

    from alface.device import cpu_devices
    from alface.loop import Loop

    n = 40
    paired = tuple(range(0, n, 4))
    wd, ids = make_page_workdir(tmp_path / "wd", n=n, paired=paired, guesses=False)
    with wd.store.transaction(
        "test"
    ):  # the loop waits for its first batch, as `alface loop` left it
        wd.store.set_meta("loop", '{"step": "wait_initial", "round": null, "iteration": null}')
    wd.close()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(tmp_path / "wd"), host="127.0.0.1",
                                           port=port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    answered: dict[str, list[int]] = {"alice": [], "bob": []}
    errors: list[BaseException] = []

    def annotate(name: str) -> None:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as c:
                html = _http_sign_in(c, name)
                while 'name="item"' in html or "other annotators' screens" in html:
                    if 'name="item"' not in html:  # a face someone holds may come to us
                        time.sleep(0.02)
                        html = c.get("/label").text
                        continue
                    item = shown_item(html)
                    label = CLASSES[(item + (name == "bob")) % 2]  # they disagree on pairs
                    html = c.post("/label", data={"item": item, "answer": label,
                                                  "csrf": csrf_of(html)}).text  # fmt: skip
                    answered[name].append(item)
        except BaseException as e:  # noqa: BLE001 (reported by the main thread)
            errors.append(e)

    polls: list[str] = []

    class Closed(Exception):
        pass

    def loop() -> None:
        try:
            w = Workdir.open(tmp_path / "wd")

            def stop(step, when):
                if step == "round_start":
                    raise Closed

            lp = Loop(w, cpu_devices(), on_step=stop)
            deadline = time.time() + 120
            while time.time() < deadline:
                try:
                    polls.append(lp.run().needs)
                except Closed:
                    polls.append("closed")
                    break
                time.sleep(0.005)
            w.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    poller = threading.Thread(target=loop)
    workers = [threading.Thread(target=annotate, args=(x,)) for x in ("alice", "bob")]
    for t in (poller, *workers):
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    # the pairs wait in the review queue; a reviewer settles them while the loop polls
    store = _store(tmp_path / "wd")
    queue = store.labels.review_queue()
    assert queue == sorted(ids[k] for k in paired) and poller.is_alive()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as c:
        _http_sign_in(c, "rita")
        html = c.get("/review").text
        while 'name="item"' in html:
            html = c.post("/review", data={"item": shown_item(html), "answer": CLASSES[0],
                                           "csrf": csrf_of(html)}).text  # fmt: skip
    poller.join()
    server.should_exit = True
    thread.join()
    assert not errors, errors
    every = store.labels.annotations(current=False)
    assert all(a.superseded_by is None and a.withdrawn is None for a in every)  # no re-answers
    labels = [(a.item_id, a.annotator) for a in every if a.kind == "label"]
    assert len(labels) == len(set(labels)) == len(answered["alice"]) + len(answered["bob"])
    assert sorted(answered["alice"] + answered["bob"]) == sorted(ids + [ids[k] for k in paired])
    for k in paired:  # both annotators on each pair
        assert {w for i, w in labels if i == ids[k]} == {"alice", "bob"}
    assert len(answered["alice"]) > 5 and len(answered["bob"]) > 5  # both really worked
    assert polls[-1] == "closed" and set(polls[:-1]) == {"labels"} and len(polls) > 3
    assert store.runs.open_batches() == [] and len(store.labels.resolved()) == n
    store.close()


def test_a_face_forgotten_while_the_page_runs_is_gone_from_it(page, capsys):
    """The page runs beside other commands: a forget (which takes the work dir's lock, as the
    page does not) removes the face from its queue and its pictures at once."""
    root, ids = page
    with _client(root) as c:
        html = _sign_in(c, "alice")
        first = shown_item(html)
        assert c.get(f"/img/{first}/face").status_code == 200
        uid = Workdir.open(root, write=False).store.items.get([int(first)])[0].uid
        assert main(["forget", str(root), "--item", uid, "--from-open-batches"]) == 0
        assert c.get(f"/img/{first}/face").status_code == 404
        r = c.get("/label")
        assert r.status_code == 200 and shown_item(r.text) != first
