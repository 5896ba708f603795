"""``%k2 --with NAMES``: copies of the notebook's variables in the sandbox, in a real kernel with
a real sandbox kernel, against the fake model server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import Kernel, fake_key_kernel
from tests.notebook.test_kernel_verify_heavy import magic

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    setup = (
        "import pandas as pd\n"
        "df = pd.DataFrame({'city': ['a', 'b', 'c'], 'sales': [1, 2, 39]})\n"
        "cfg = {'target': 42}\n"
        "gen = (i for i in range(3))\n"
    )
    with fake_key_kernel(setup) as k:
        yield k


def test_with_copies_variables_and_tells_the_model(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(
                reasoning="use the copies",
                tool_calls=[
                    Call("python", {"code": "print(df['sales'].sum(), cfg['target'], df.shape)"})
                ],
            ),
            Turn(content="Total sales 42."),
            Turn(tool_calls=[Call("python", {"code": "df['sales'] = 0\nprint('changed')"})]),
            Turn(content="Changed the copy."),
            Turn(content="Still 42."),
        ]
    )
    base = f"--new --base-url {fake_model.base_url} --approve auto"
    assert "USAGE" not in magic(kernel, f"{base} --with df,cfg what are the total sales?")
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_for(f"_k2s().runs[{i}].final is not None", 60)
    events = kernel.events(i)
    out = next(e["output"] for e in events if e["type"] == "tool.result")
    assert "42 42 (3, 2)" in out
    # the view says what was copied
    notes = [e["message"] for e in events if e["type"] == "notice" and e["kind"] == "data"]
    assert notes and "df (DataFrame, shape (3, 2)" in notes[0] and "cfg (dict" in notes[0]
    # the model is told names, types, shapes and columns in the system prompt
    system = fake_model.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert "- df: DataFrame, shape (3, 2), columns city (" in system["content"]
    assert "sales (int64)" in system["content"] and "- cfg: dict, length 1" in system["content"]

    # a copy: the model changing it leaves the notebook's variable alone
    assert "USAGE" not in magic(kernel, f"{base} --with df change the sales")
    j = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_for(f"_k2s().runs[{j}].final is not None", 60)
    assert kernel.value("int(df['sales'].sum())") == 42

    # a follow-up keeps its system prompt: the note on the copies comes with the message
    follow = f"--base-url {fake_model.base_url} --approve auto --with cfg and the target?"
    assert "USAGE" not in magic(kernel, follow)
    k = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_for(f"_k2s().runs[{k}].final is not None", 60)
    last = fake_model.requests[-1]["messages"]
    assert last[0]["content"] == fake_model.requests[2]["messages"][0]["content"]
    assert (
        "- cfg: dict, length 1" in last[-1]["content"] and "and the target?" in last[-1]["content"]
    )


def test_with_refuses_clearly(kernel: Kernel, fake_model: FakeModel) -> None:
    before = int(kernel.value("len(_k2s().runs)"))
    base = f"--base-url {fake_model.base_url} --approve auto"
    said = magic(kernel, f"{base} --with gen hi")
    assert "USAGE:" in said and "'gen'" in said and "cannot be pickled" in said
    said = magic(kernel, f"{base} --with nope hi")
    assert "USAGE:" in said and "no variable 'nope'" in said
    said = magic(kernel, f"{base} --with df --in-kernel hi")
    assert "USAGE:" in said and "--in-kernel" in said
    said = magic(kernel, f"{base} --with df --heavy 2 hi")
    assert "USAGE:" in said and "--with" in said
    assert int(kernel.value("len(_k2s().runs)")) == before  # no run was started
    assert not fake_model.requests
