"""The labextension's event types (labextension/src/types.ts) cover every event of k2lab/events.py,
with the same field names, and a field is optional in TypeScript exactly when it has a default in
Python (issue 9: the TypeScript event types are checked against ``events.py``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from k2lab.events import EVENT_TYPES

TYPES_TS = Path(__file__).resolve().parents[2] / "labextension" / "src" / "types.ts"
BASE = {"seq", "ts", "lane", "type"}


def ts_events() -> dict[str, dict[str, bool]]:
    """type -> {field: optional} for each ``interface X extends IEventBase`` in types.ts."""
    src = TYPES_TS.read_text(encoding="utf-8")
    out: dict[str, dict[str, bool]] = {}
    for m in re.finditer(r"export interface (\w+) extends IEventBase \{(.*?)\n\}", src, re.S):
        body = m.group(2)
        t = re.search(r"^\s*type: '([^']+)';", body, re.M)
        assert t, f"{m.group(1)} has no literal type"
        fields = dict(
            (f.group(1), f.group(2) == "?")
            for f in re.finditer(r"^  (\w+)(\??): ", body, re.M)
            if f.group(1) != "type"
        )
        out[t.group(1)] = fields
    return out


def py_events() -> dict[str, dict[str, bool]]:
    out = {}
    for t, cls in EVENT_TYPES.items():
        out[t] = {
            f.name: f.default is not dataclasses.MISSING
            or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(cls)
            if f.name not in BASE
        }
    return out


def test_every_event_type_has_a_typescript_interface() -> None:
    assert sorted(ts_events()) == sorted(py_events())


def test_fields_and_optionality_match() -> None:
    ts, py = ts_events(), py_events()
    for t in py:
        assert ts[t] == py[t], t


def test_the_union_names_every_interface() -> None:
    src = TYPES_TS.read_text(encoding="utf-8")
    union = re.search(r"export type K2Event =(.*?);", src, re.S)
    assert union
    names = set(re.findall(r"\|\s*(\w+)", union.group(1)))
    ifaces = set(re.findall(r"export interface (\w+) extends IEventBase", src))
    assert names == ifaces


def test_base_fields() -> None:
    src = TYPES_TS.read_text(encoding="utf-8")
    base = re.search(r"export interface IEventBase \{(.*?)\n\}", src, re.S)
    assert base
    for name in ("type", "seq", "ts", "lane"):
        assert re.search(rf"^\s*{name}\??: ", base.group(1), re.M), name
