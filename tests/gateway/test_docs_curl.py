"""The docs as a reader uses them: the partner guide's curl examples, run as written against
`python -m gateway run`, answer what the guide shows; the commands and settings the docs name
exist."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.config import PREFIX, Config
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDE = DOCS / "partner-guide.md"
WEBHOOKS = ("/ussd", "/ussd/events", "/sms/incoming", "/sms/delivery")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int


@dataclass(frozen=True)
class Example:
    script: str
    answer: str  # the answer the guide shows: status line, some headers, blank line, body
    line: int


def blocks(markdown: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), markdown.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(markdown)]


def guide() -> tuple[str, list[Example]]:
    """The guide's setup block (no curl in it) and its examples: a curl block, then its answer."""
    found = blocks(GUIDE.read_text(encoding="utf-8"))
    setup, examples = [], []
    for i, block in enumerate(found):
        if block.lang != "sh":
            continue
        if "curl" not in block.text:
            setup.append(block.text)
            continue
        after = found[i + 1] if i + 1 < len(found) else None
        assert after is not None and after.lang == "text", \
            f"partner-guide.md:{block.line}: a curl example must be followed by its answer in a ```text block"
        examples.append(Example(block.text, after.text, block.line))
    return "\n".join(setup), examples


def as_the_reader_sets_it(setup: str, base_url: str, key: str) -> str:
    """The guide tells the reader to set TEEKA to Teeka's address and KEY to the webhook key."""
    setup, teeka = re.subn(r"^TEEKA=\S*", f"TEEKA={base_url}", setup, flags=re.M)
    setup, keys = re.subn(r"^KEY=\S*", f"KEY={key}", setup, flags=re.M)
    assert teeka == 1 and keys == 1, "the guide's setup block sets TEEKA= and KEY= once each"
    return setup


def split_answer(text: str) -> tuple[str, list[str], str]:
    """(status line, header lines, body) of an HTTP answer as `curl -i` prints it."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    blank = lines.index("") if "" in lines else len(lines)
    status, headers = (lines[0] if lines else ""), lines[1:blank]
    return status, headers, "\n".join(lines[blank + 1:]).rstrip("\n")


def check(example: Example, output: str) -> str | None:
    """None when the output is the answer the guide shows, else what differs."""
    want_status, want_headers, want_body = split_answer(example.answer)
    status, headers, body = split_answer(output)
    if status != want_status:
        return f"status line {status!r}, the guide shows {want_status!r}"
    lowered = {h.lower() for h in headers}
    missing = [h for h in want_headers if h.lower() not in lowered]
    if missing:
        return f"headers {missing} missing from {headers}"
    if body != want_body:
        return f"body {body!r}, the guide shows {want_body!r}"
    return None


# ---- the guide's shape ----

def test_every_curl_example_shows_its_answer():
    setup, examples = guide()
    assert "TEEKA=" in setup and examples
    for example in examples:
        status, _, _ = split_answer(example.answer)
        assert re.match(r"^HTTP/1\.1 \d{3} ", status), f"partner-guide.md:{example.line}: answer starts with {status!r}"


def test_the_examples_cover_every_webhook_and_use_the_reader_s_address_and_key():
    _, examples = guide()
    for path in WEBHOOKS:
        assert any(f'"$TEEKA{path}' in e.script for e in examples), f"no curl example for {path}"
    for example in examples:
        assert "$TEEKA/" in example.script and "$KEY" in example.script, \
            f"partner-guide.md:{example.line}: use $TEEKA and $KEY, as the guide tells the reader"


def test_the_guide_lists_the_four_callback_urls_with_the_key():
    text = GUIDE.read_text(encoding="utf-8")
    for path in WEBHOOKS:
        assert f"`https://teeka.example.org{path}?key=<key>`" in text


# ---- the examples against `python -m gateway run` ----

def gateway_env(**settings: str) -> dict:
    """This process's environment without GATEWAY_* settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(settings)
    return env


def wait_until_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`run` exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"`run` was not ready within {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def running(tmp_path):
    """Start `python -m gateway run` (embedded Redis in a temp dir) with the given webhook key."""
    procs: list[subprocess.Popen] = []

    def start(key: str = "") -> str:
        port, log = free_port(), tmp_path / f"run-{len(procs)}.log"
        settings = {"GATEWAY_DATA_DIR": str(tmp_path / f"var-{len(procs)}"), "GATEWAY_CODE_SECRET": "docs"}
        if key:
            settings["GATEWAY_WEBHOOK_KEY"] = key
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--port", str(port)], cwd=ROOT,
                                    env=gateway_env(**settings), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, proc, log)
        return base

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, as the reader stops it
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
@pytest.mark.parametrize("key", ["", "docs-Key_1"], ids=["no key, as `run` starts", "with a webhook key"])
def test_the_curl_examples_answer_what_the_guide_shows(running, key):
    base = running(key)
    setup, examples = guide()
    setup = as_the_reader_sets_it(setup, base, key)
    failures = []
    for example in examples:
        result = subprocess.run(["bash", "-c", setup + "\n" + example.script], capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL)
        problem = check(example, result.stdout) if result.returncode == 0 else \
            f"curl exited {result.returncode}: {result.stderr.strip()[-300:]}"
        if problem:
            failures.append(f"partner-guide.md:{example.line}: {problem}")
    assert not failures, "\n".join(failures)


# ---- names the docs use ----

def doc_texts() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md"))}


def test_the_docs_name_only_real_settings():
    settings = {PREFIX + f.upper() for f in Config.__dataclass_fields__ if f != "extra"}
    for name, text in doc_texts().items():
        for setting in set(re.findall(r"\bGATEWAY_[A-Z_]+[A-Z]\b", text)):
            assert setting in settings, f"{name} names {setting}, which gateway/config.py does not read"


def command_options() -> dict[str, set[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {name: {flag for action in p._actions for flag in action.option_strings}
            for name, p in sub.choices.items()}


def test_the_docs_name_only_real_commands_and_flags():
    commands = command_options()
    for name, text in doc_texts().items():
        for match in re.finditer(r"python -m gateway ([a-z][a-z-]*)([^`\n]*)", text):
            command, rest = match.group(1), match.group(2)
            assert command in commands, f"{name}: `python -m gateway {command}` is not a command"
            for flag in re.findall(r"(?<!\S)(--?[a-z][a-z-]*)", rest):
                assert flag in commands[command], f"{name}: `{command}` has no option {flag}"
