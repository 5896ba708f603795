"""Demo "fix a bug": the model guesses a schema, hits a KeyError, reads the traceback, corrects.

The mistake is deliberate and the correction is driven by the tool output in the request: the
exception name and key come from the traceback, the real field names from printing a record, and
the averages in the answer from the fixed code's output.
"""

from __future__ import annotations

import ast
import re

from k2lab.providers.demo.turn import Reply, Turn, quote, why_not_run

FIRST_TRY = """
import random

rng = random.Random(11)
customers = ["ana", "ben", "chen", "dana"]
orders = [
    {"customer": rng.choice(customers), "day": day, "total": round(rng.uniform(5, 120), 2)}
    for day in range(1, 41)
]

# average order value per customer
totals = {}
for o in orders:
    totals.setdefault(o["customer_id"], []).append(o["amount"])
avg = {c: sum(v) / len(v) for c, v in totals.items()}
print(avg)
"""

INSPECT = """
print(sorted(orders[0]))
for o in orders[:3]:
    print(o)
print(len(orders), "orders")
"""

FIX = """
totals = {{}}
for o in orders:
    totals.setdefault(o[{who!r}], []).append(o[{amount!r}])
avg = {{c: round(sum(v) / len(v), {digits}) for c, v in sorted(totals.items())}}
for c, a in avg.items():
    print(f"{{c}}: orders={{len(totals[c])}} avg={{a:.{digits}f}}")
"""

VERIFY = """
import pandas as pd

check = pd.DataFrame(orders).groupby({who!r})[{amount!r}].mean().round({digits})
print(check.to_string())
print("matches:", all(abs(check[c] - avg[c]) < 1e-9 for c in avg))
"""

_AMOUNT_NAMES = ("total", "amount", "value", "price", "sum")
_NUMBER_WORDS = {"zero": 0, "no": 0, "one": 1, "a single": 1, "two": 2, "three": 3, "four": 4}
_DECIMALS = re.compile(
    r"\b(\d|zero|no|one|a single|two|three|four)\s+(?:decimal|digit|place)", re.I
)


def _keys(output: str) -> list[str]:
    """The field names printed by the inspect step (its first line is ``sorted(orders[0])``)."""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("["):
            try:
                keys = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                continue
            if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
                return keys
    return []


def _digits(feedback: str | None) -> int | None:
    """Decimal places the person asked for ("round the averages to 1 decimal place"), if any."""
    text = (feedback or "").lower()
    m = _DECIMALS.search(text)
    if m:
        word = m.group(1)
        return int(word) if word.isdigit() else _NUMBER_WORDS[word]
    if re.search(r"\b(whole numbers?|integers?|no decimals)\b", text):
        return 0
    if "cent" in text:
        return 2
    return None


def _digits_of(averages: list[str]) -> int:
    """The rounding the fix that ran used, read from what it printed (a person may have edited
    the code, or asked for another rounding): 2, to the cent, when nothing says otherwise."""
    places = {len(a.partition(".")[2]) for a in averages}
    return places.pop() if len(places) == 1 else 2


def _pick(keys: list[str]) -> tuple[str | None, str | None]:
    who = next((k for k in keys if "customer" in k or "client" in k), None)
    amount = next((k for name in _AMOUNT_NAMES for k in keys if name in k.lower()), None)
    return who, amount


def play(t: Turn) -> Reply:
    first = t.last("average order value per customer")
    if first is None:
        return t.call(
            "average order value per customer",
            FIRST_TRY,
            "The task: average order value per customer. I'll generate the orders (a seeded "
            "sample, 40 orders over 4 customers) and group them. Order records usually look like "
            "{customer_id, amount}, so I'll accumulate o['customer_id'] -> o['amount'] in a dict "
            "of lists and divide sums by counts.",
        )
    if first.status == "rejected":
        return _not_run(t, first.feedback, first.never_policy)
    if first.status == "ok":
        # a person edited the call into something that works: report what it printed
        return t.answer(
            "The first call ran without an error"
            + (" after the user's edit" if first.edited else "")
            + "; its output is the result.",
            f"Average order value per customer:\n\n```\n{quote(first.output)}\n```",
        )
    inspect = t.last("inspect the records")
    if inspect is None:
        return t.call(
            "inspect the records",
            INSPECT,
            f"That failed: the traceback ends with {first.error_name}: {first.error_value}. So "
            f"my assumption about the schema was wrong: the records have no {first.error_value} "
            "field. The list `orders` was built before the failing loop, so it exists in the "
            "kernel; instead of guessing again I'll print the actual keys of a record and a few "
            "rows.",
        )
    if inspect.status != "ok":
        return _not_run(t, inspect.feedback, inspect.never_policy, what="inspect the records")
    keys = _keys(inspect.output)
    who, amount = _pick(keys)
    if who is None or amount is None:
        return t.answer(
            f"The records' keys are {keys or 'not visible'}; I can't tell which field holds "
            "the customer and which the amount, so I'll ask instead of guessing.",
            f"The records have the fields {keys}; which one is the customer and which the order "
            "amount? Output:\n\n```\n" + quote(inspect.output) + "\n```",
        )
    fix = t.last("fix")
    if fix is None:
        return t.call(
            "fix",
            FIX.format(who=who, amount=amount, digits=2),
            f"The records' keys are {keys}: the customer is under '{who}' and the amount under "
            f"'{amount}', not 'customer_id' / 'amount'. That is the whole bug. I'll rerun the "
            "grouping with the right keys and round to cents.",
        )
    if fix.status == "rejected":
        digits = _digits(fix.feedback)
        if digits is not None and not t.never and t.count("fix") < 3:
            places = f"{digits} decimal place{'' if digits == 1 else 's'}"
            return t.call(
                "fix",
                FIX.format(who=who, amount=amount, digits=digits),
                f'The user rejected the corrected grouping and said: "{fix.feedback}". The keys '
                f"'{who}' and '{amount}' stay as they are; what changes is the rounding: I'll "
                f"round the averages to {places} instead of cents and run it again.",
            )
        return _not_run(t, fix.feedback, fix.never_policy, what="run the corrected grouping")
    if fix.status != "ok":
        return t.answer(
            f"The corrected code did not run cleanly ({fix.status}: {fix.error_name}).",
            "The corrected code did not run cleanly:\n\n```\n" + quote(fix.output) + "\n```",
        )
    rows = re.findall(r"^(\S+): orders=(\d+) avg=([\d.]+)$", fix.output, re.M)
    digits = _digits_of([a for _, _, a in rows])
    verify = t.last("verify")
    if verify is None:
        listed = ", ".join(f"{c} {a}" for c, _, a in rows)
        return t.call(
            "verify",
            VERIFY.format(who=who, amount=amount, digits=digits),
            f"Now it works: {listed}. Before I report, an independent check: the same mean "
            "computed by pandas' groupby should agree "
            + ("to the cent." if digits == 2 else f"to {digits} decimal place(s)."),
        )
    table = "\n".join(f"| {c} | {n} | {a} |" for c, n, a in rows)
    checked = "matches: True" in verify.output
    check_line = (
        "Checked independently with `pandas.DataFrame.groupby(...).mean()`: the values agree."
        if checked
        else "The pandas cross-check did **not** confirm these values:\n\n```\n"
        + quote(verify.output)
        + "\n```"
    )
    return t.answer(
        f"The pandas check printed {'matches: True' if checked else 'a mismatch'}. Summary: the "
        f"bug was my assumed schema ({first.error_name}: {first.error_value}); the data uses "
        f"'{who}' and '{amount}'.",
        "Average order value per customer:\n\n| customer | orders | average |\n|---|---|---|\n"
        f"{table}\n\n{check_line}\n\nWhat went wrong first: I assumed the fields "
        f"`customer_id` / `amount` and the code raised `{first.error_name}: {first.error_value}`. "
        f"Printing a record showed the real fields `{who}` and `{amount}`; the fix uses them.",
    )


def _not_run(t: Turn, feedback: str | None, never: bool, what: str = "group the orders") -> Reply:
    why = why_not_run(feedback, never)
    ran = any(ex.status in ("ok", "error") for ex in t.exchanges)
    return t.answer(
        f"I can't {what}: {why}. I won't make numbers up.",
        f"I could not compute the averages: {why}, so "
        + ("the corrected code did not run" if ran else "no code ran")
        + ". Approve the `python` call to let me run it"
        + (" (or say how it should change, e.g. the rounding)." if ran else "."),
    )
