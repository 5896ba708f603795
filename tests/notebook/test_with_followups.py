"""Small gaps of issue 10 in ``%k2``, in a real kernel with a real sandbox kernel against the fake
model over HTTP: ``--vision on|off`` decides whether a plot of a tool result goes to the model,
and a follow-up whose sandbox is not the one that holds the earlier ``--with`` copies tells the
model they are gone (the conversation's note still names them)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import Kernel, fake_key_kernel
from tests.notebook.test_kernel_verify_heavy import magic

pytestmark = pytest.mark.timeout(180)

# a real PNG signature: the sandbox shows it as image/png output
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()
SHOW = (
    "import base64\nfrom IPython.display import Image, display\n"
    f"display(Image(data=base64.b64decode('{PNG}'), format='png'))\nprint('drawn')"
)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with fake_key_kernel("cfg = {'target': 42}") as k:
        yield k


def _last_run(kernel: Kernel) -> int:
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_for(f"_k2s().runs[{i}].final is not None", 60)
    return i


def _images(body: dict[str, Any]) -> list[Any]:
    return [
        part
        for m in body["messages"]
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    ]


@pytest.mark.parametrize(("vision", "sent"), [("on", 1), ("off", 0)])
def test_vision_option_decides_if_the_plot_goes_to_the_model(
    kernel: Kernel, fake_model: FakeModel, vision: str, sent: int
) -> None:
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": SHOW})]), Turn(content="A picture.")]
    )
    line = f"--new --base-url {fake_model.base_url} --approve auto --vision {vision} draw"
    assert "USAGE" not in magic(kernel, line)
    i = _last_run(kernel)
    assert len(_images(fake_model.requests[1])) == sent
    (res,) = [e for e in kernel.events(i) if e["type"] == "tool.result"]
    assert res.get("sent_to_model", []) == ([0] if sent else [])
    assert "USAGE:" in magic(kernel, "--vision maybe draw")  # argparse's choices


def test_a_follow_up_in_another_sandbox_is_told_the_copies_are_gone(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("x")
    fake_model.script([Turn(content="ok")] * 4)
    base = f"--base-url {fake_model.base_url} --approve auto"
    assert "USAGE" not in magic(kernel, f"--new {base} --with cfg first")
    _last_run(kernel)
    assert "- cfg: dict" in fake_model.requests[0]["messages"][0]["content"]
    # same sandbox: nothing to say
    assert "USAGE" not in magic(kernel, f"{base} second")
    _last_run(kernel)
    assert fake_model.requests[1]["messages"][-1]["content"] == "second"
    # --data gives another sandbox: cfg is not in it, and the model is told so, once
    assert "USAGE" not in magic(kernel, f"{base} --data {tmp_path} third")
    i = _last_run(kernel)
    said = fake_model.requests[2]["messages"][-1]["content"]
    assert said.startswith("Note from k2lab: the python tool now runs in a new sandbox")
    assert "(cfg)" in said and said.endswith("\n\nthird"), json.dumps(said)
    # the view's prompt is the user's words; the note is a field of run.start
    start = kernel.events(i)[0]
    assert start["prompt"] == "third" and start["note"] == said.removesuffix("\n\nthird")
    assert "USAGE" not in magic(kernel, f"{base} --data {tmp_path} fourth")
    _last_run(kernel)
    assert fake_model.requests[3]["messages"][-1]["content"] == "fourth"
