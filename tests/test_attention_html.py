"""The attention page: its data (against the model), its file (self-contained), and the page in a real browser.

The browser tests drive headless Chromium (the Debian package `chromium`, which CI installs) over the DevTools
protocol on a pipe (`--remote-debugging-pipe`): no web driver, no browser download, no network. They load the
page from disk, read the rendered DOM, move the mouse and click the step buttons, and take a screenshot. Without
a local Chromium they are skipped with the reason.
"""

import base64
import io
import json
import os
import re
import select
import shutil
import subprocess
import time

import pytest
import torch
from reversal_task import reversal_model

from vanilla_transformer.attention import KINDS, attention_maps, explorer_data, generation_trace, main
from vanilla_transformer.attention_html import embed_json, render_html, write_html

SOURCE = "a b c d e"
CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium; CI installs it)"
)


@pytest.fixture(scope="module")
def data():
    model, tokenizer = reversal_model()
    return explorer_data(model, tokenizer, SOURCE, model_name="reversal")


def embedded(html: str) -> dict:
    """The JSON data of a page, read back the way the page reads it."""
    match = re.search(r'<script id="attention-data" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


# The data behind the page
# ------------------------
def test_step_through_replays_the_cached_decoding_of_the_models_own_output(data) -> None:
    model, tokenizer = reversal_model()
    maps = attention_maps(model, tokenizer, SOURCE)
    assert data["target_tokens"] == maps.target_tokens == ["<s>", "e", "d", "c", "b", "a"]
    assert [step["next"] for step in data["steps"]] == maps.predicted_tokens == ["e", "d", "c", "b", "a", "</s>"]
    for t, step in enumerate(data["steps"]):
        assert step["query"] == t and step["cache_length"] == t + 1  # the cache holds the query and all before it
        # one token per step with the cache gives the rows of the full teacher-forced pass (up to rounding)
        torch.testing.assert_close(torch.tensor(step["self"]), maps.decoder_self[:, :, t, : t + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.tensor(step["cross"]), maps.cross[:, :, t], atol=1e-4, rtol=0)
        assert step["top_k"][0][0] == step["next"] and step["next_rank"] == 1  # greedy takes the most probable
        probabilities = [p for _, p in step["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
    for name in KINDS:
        torch.testing.assert_close(torch.tensor(data[name]), maps.kind(name), atol=1e-4, rtol=0)
    assert data["alignment"] == [(4, 0), (3, 1), (2, 2), (1, 3), (0, 4)]
    assert data["translation"] == "e d c b a" and data["decoding"] == "greedy decoding"


def test_beam_search_trace_follows_the_best_beam() -> None:
    model, tokenizer = reversal_model()
    encoded = tokenizer("a b c d e f", return_tensors="pt")
    best = model.generate(**encoded, num_beams=4, do_sample=False, max_new_tokens=12)[0]
    trace = generation_trace(model, tokenizer, "a b c d e f", num_beams=4, max_new_tokens=12)
    assert trace.tokens == tokenizer.convert_ids_to_tokens(best.tolist())
    assert trace.encoder_runs == 1 and len(trace.steps) == len(best) - 1
    assert all(1 <= step.next_rank for step in trace.steps)


def test_forced_target_is_stepped_through_and_says_so() -> None:
    model, tokenizer = reversal_model()
    forced = explorer_data(model, tokenizer, "a b c", target="a b c")  # not reversed
    assert forced["forced"] and forced["decoding"] == "teacher-forced on the given target"
    assert [step["next"] for step in forced["steps"]] == ["a", "b", "c", "</s>"]
    assert forced["steps"][0]["top_k"][0][0] == "c"  # the model would start with "c" ...
    assert forced["steps"][0]["next_rank"] > 1  # ... so the forced "a" is shown with its lower rank
    with pytest.raises(ValueError, match="top_k"):
        explorer_data(model, tokenizer, "a b", top_k=0)


def test_page_is_one_offline_file_and_its_data_survives_any_token(data, tmp_path) -> None:
    html = render_html(data)
    assert embedded(html) == json.loads(json.dumps(data))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched from elsewhere
    assert "@import" not in html and "url(" not in html
    nasty = {"tokens": ["</script><script>alert(1)</script>", "a & b", "<!--", "\u2028"]}
    text = embed_json(nasty)
    assert "</" not in text and "<!--" not in text and json.loads(text) == nasty
    path = write_html(data, str(tmp_path / "sub" / "page.html"))
    assert embedded(open(path, encoding="utf-8").read())["source"] == SOURCE


def test_command_writes_the_page(tmp_path, capsys) -> None:
    model, tokenizer = reversal_model()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    page = tmp_path / "page.html"
    main([str(tmp_path / "model"), "a b c", "--html", str(page), "--num-beams", "2", "--top-k", "3"])
    printed = capsys.readouterr().out
    assert str(page) in printed and not (tmp_path / "attention").exists()  # --html alone writes no PNGs
    written = embedded(page.read_text(encoding="utf-8"))
    assert written["source_tokens"] == ["a", "b", "c", "</s>"] and written["translation"] == "c b a"
    assert written["decoding"].startswith("beam search, 2 beams") and len(written["steps"][0]["top_k"]) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["m"], "give the source once"),
        (["m", "a", "--source", "b"], "give the source once"),
        (["--source", "a"], "give the model once"),
        (["m", "   "], "source sentence is empty"),
        (["m", "a", "--top-k", "0"], "--top-k must be at least 1"),
    ],
)
def test_command_line_mistakes_exit_with_status_2(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# The page in a browser
# ---------------------
class Chromium:
    """Headless Chromium driven over the DevTools protocol, JSON messages ending in NUL on fds 3 (in) and 4 (out)."""

    def __init__(self, profile: str, width: int = 1300, height: int = 1000) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def child_fds() -> None:  # move the pipe ends to the descriptors Chromium expects
            read_end, write_end = os.dup(to_browser), os.dup(from_browser)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        flags += ["--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
        self.process = subprocess.Popen(
            [CHROMIUM, *flags, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
            + ["--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            close_fds=False,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.events = b"", 0, []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.size = (width, height)
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable", session=True)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def send(self, method: str, session: bool = False, timeout: float = 30.0, **params: object) -> dict:
        """Send one command and return its result (events that arrive meanwhile go to `self.events`)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._read], [], [], timeout)
                chunk = os.read(self._read, 1 << 20) if ready else b""
                if not chunk:
                    raise RuntimeError(f"Chromium did not answer {method} within {timeout} s")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, expression: str) -> object:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait until the page's script has drawn everything (it sets `data-ready` on the body)."""
        self.send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate("document.readyState === 'complete' && document.body.dataset.ready === '1'"):
                    return
            except RuntimeError:
                pass  # the old document went away mid-evaluation: ask the new one
            time.sleep(0.05)
        raise RuntimeError(f"the page {url} did not finish loading: {self.errors()}")

    def errors(self) -> list[str]:
        """Uncaught script errors so far."""
        return [str(e["params"]) for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def requests(self) -> list[str]:
        """URLs the page asked for."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def mouse(self, selector: str, kind: str = "mouseMoved") -> None:
        """Move the mouse onto the centre of the element (scrolled into view), or press + release there."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        if kind == "click":
            self.send("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)
            for event in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", session=True, type=event, x=x, y=y, button="left", clickCount=1)
        else:
            self.send("Input.dispatchMouseEvent", session=True, type="mouseMoved", x=x, y=y)

    def screenshot(self) -> bytes:
        self.evaluate("window.scrollTo(0, 0)")
        return base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except RuntimeError:
            pass  # already closing: the pipe ends before the reply
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def page(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    path = write_html(data, str(folder / "attention.html"))
    browser = Chromium(str(folder / "profile"))
    try:
        browser.open("file://" + os.path.abspath(path))
        yield browser
    finally:
        browser.close()


def cells(browser: Chromium, kind: str) -> list[dict]:
    """Every cell of one matrix: row, column, classes, weight shown."""
    return browser.evaluate(
        f"[...document.querySelectorAll('#map-{kind} .cell')].map(c => ({{r: +c.dataset.r, c: +c.dataset.c,"
        " masked: c.classList.contains('masked'), row: c.classList.contains('hl-row'),"
        " col: c.classList.contains('hl-col'), step: c.classList.contains('step-row'),"
        " weight: c.dataset.weight === undefined ? null : +c.dataset.weight, background: c.style.background}))"
    )


def choose(browser: Chromium, select_id: str, value: str) -> None:
    """Pick `value` in a <select> as a user does (the page listens to its change event)."""
    browser.evaluate(
        f"(() => {{ const s = document.getElementById({json.dumps(select_id)}); s.value = {json.dumps(value)};"
        " s.dispatchEvent(new Event('change')); })()"
    )


@needs_chromium
def test_browser_shows_the_three_kinds_with_labels_and_the_masked_triangle(page, data) -> None:
    model, tokenizer = reversal_model()
    maps = attention_maps(model, tokenizer, SOURCE)
    assert page.errors() == []
    assert all(url.startswith(("file:", "about:", "data:")) for url in page.requests())  # nothing from a network
    labels = page.evaluate(
        "Object.fromEntries(['encoder_self', 'decoder_self', 'cross'].map(k => [k, ["
        "[...document.querySelectorAll('#map-' + k + ' .rowlabel')].map(e => e.textContent),"
        "[...document.querySelectorAll('#map-' + k + ' .collabel')].map(e => e.textContent)]]))"
    )
    assert labels["encoder_self"] == [maps.source_tokens, maps.source_tokens]
    assert labels["decoder_self"] == [maps.target_tokens, maps.target_tokens]
    assert labels["cross"] == [maps.target_tokens, maps.source_tokens]
    assert page.evaluate("document.querySelector('#panel-cross .shape').textContent").startswith("[6 \u00d7 6]")
    for name in KINDS:  # the last layer, averaged over the heads, is shown first
        shown = cells(page, name)
        rows, cols = maps.kind(name).shape[-2:]
        assert len(shown) == rows * cols
        expected = maps.kind(name)[-1].mean(0)
        for cell in shown:
            masked = name == "decoder_self" and cell["c"] > cell["r"]
            assert cell["masked"] == masked  # masked means the future, nothing else
            if masked:
                assert cell["weight"] is None and cell["background"] == ""  # drawn as masked, not as a zero
            else:
                assert cell["weight"] == pytest.approx(float(expected[cell["r"], cell["c"]]), abs=2e-4)
    choose(page, "head", "1")
    choose(page, "layer", "0")
    head = {(c["r"], c["c"]): c["weight"] for c in cells(page, "cross")}
    assert head[(2, 2)] == pytest.approx(float(maps.cross[0, 1, 2, 2]), abs=2e-4)  # layer 1, head 2
    choose(page, "head", "mean")
    choose(page, "layer", "1")
    assert page.evaluate("location.hash") == "#layer=2&head=mean&step=1"


@needs_chromium
def test_hovering_a_token_highlights_what_it_attends_to_and_what_attends_to_it(page) -> None:
    page.mouse("#map-encoder_self .rowlabel[data-index='2']")  # source token "c"
    encoder, cross = cells(page, "encoder_self"), cells(page, "cross")
    assert {(c["r"], c["c"]) for c in encoder if c["row"]} == {(2, c) for c in range(6)}  # what "c" attends to
    assert {(c["r"], c["c"]) for c in encoder if c["col"]} == {(r, 2) for r in range(6)}  # what attends to "c"
    assert {(c["r"], c["c"]) for c in cross if c["col"]} == {(r, 2) for r in range(6)}  # decoder steps reading "c"
    assert not any(c["row"] for c in cross)  # a source token is no query of cross-attention
    info = page.evaluate("document.getElementById('hover-info').textContent")
    assert info.startswith("\u2018c\u2019 (source token 2) attends most to")
    page.mouse("#map-decoder_self .cell[data-r='1'][data-c='3']")  # a masked cell
    assert page.evaluate("document.getElementById('hover-info').textContent").startswith("Masked:")
    page.mouse("h1")  # away: nothing highlighted
    assert not any(c["row"] or c["col"] for c in cells(page, "encoder_self"))


@needs_chromium
def test_step_through_shows_query_cache_cross_row_and_next_token(page, data) -> None:
    page.mouse("#first", "click")
    for _ in range(2):
        page.mouse("#next", "click")
    assert page.evaluate("document.getElementById('step-label').textContent") == "step 3 of 6"
    chips = page.evaluate(
        "[...document.querySelectorAll('#step-tokens .tok')].map(c => [c.firstChild.textContent, c.className])"
    )
    assert [text for text, _ in chips] == ["<s>", "e", "d", "c", "b", "a", "</s>"]
    roles = [set(classes.split()) - {"tok", "ws"} for _, classes in chips]
    assert roles[:3] == [{"cached"}, {"cached"}, {"query"}] and roles[3] == {"next", "future"}
    assert all(role == {"future"} for role in roles[4:])
    text = page.evaluate("document.getElementById('step-text').textContent")
    assert "has produced \u2018e\u2019 \u2018d\u2019" in text and "the cache now holds 3" in text
    state = page.evaluate("attentionExplorer.state()")
    assert state["query"] == "d" and state["cached"] == ["<s>", "e", "d"] and state["next"] == "c"
    step = data["steps"][2]
    heads = torch.tensor(step["self"])[-1]  # the last layer, mean of its heads
    assert state["self"] == pytest.approx(heads.mean(0).tolist(), abs=1e-6)
    bars = page.evaluate("[...document.querySelectorAll('#step-cross .bars .value')].map(e => +e.textContent)")
    assert bars == pytest.approx(torch.tensor(step["cross"])[-1].mean(0).tolist(), abs=1e-3)
    topk = page.evaluate(
        "[...document.querySelectorAll('#step-topk .bars .name')].map(e => [e.textContent, e.className])"
    )
    assert topk[0] == ["c", "name chosen"] and len(topk) == len(step["top_k"])
    shapes = page.evaluate("document.getElementById('step-shapes').textContent")
    dk = data["dims"]["d_k_decoder"]
    assert f"K [3 \u00d7 {dk}], V [3 \u00d7 {dk}]: 2 cached + 1 new" in shapes and "[1 \u00d7 6]" in shapes
    assert {c["r"] for c in cells(page, "cross") if c["step"]} == {2}  # the step's row, marked in the matrix
    page.mouse("#last", "click")
    assert page.evaluate("attentionExplorer.state().step") == 5
    page.mouse("#next", "click")  # past the end: stays at the last step
    assert page.evaluate("document.getElementById('step-label').textContent") == "step 6 of 6"
    assert page.errors() == []


@needs_chromium
def test_screenshot_of_the_page_is_not_blank(page) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    assert image.size == page.size
    counts = image.getcolors(maxcolors=image.size[0] * image.size[1])  # [(pixels, (r, g, b)), ...]
    drawn = sum(n for n, colour in counts if min(colour) < 230)
    assert drawn > 0.05 * image.size[0] * image.size[1]  # drawn, not an empty white page
    colours = {colour for _, colour in counts}
    assert len(colours) > 200
    assert any(r < 90 and g < 30 and 60 < b < 110 for r, g, b in colours)  # dark viridis cells are on screen
