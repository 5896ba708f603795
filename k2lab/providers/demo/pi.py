"""Demo "estimate pi": a Monte Carlo estimate with numpy, then a check against ``math.pi``.

Every number in the reasoning and the answer is read from the tool output in the request; none is
written here. A rejected call with a point count in the feedback ("use 10000 points") is followed.
"""

from __future__ import annotations

import re

from k2lab.providers.demo.turn import Reply, Turn, quote, values

DEFAULT_N = 1_000_000

SAMPLE = """
import numpy as np

rng = np.random.default_rng(2024)  # fixed seed: the run can be replayed exactly
n = {n}
xy = rng.random((n, 2))
inside = int(((xy ** 2).sum(axis=1) <= 1.0).sum())
pi_hat = 4 * inside / n
print(f"inside={{inside}} n={{n}} pi_hat={{pi_hat:.6f}}")
"""

SAMPLE_PURE = """
import random

rng = random.Random(2024)
n = {n}
inside = sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
pi_hat = 4 * inside / n
print(f"inside={{inside}} n={{n}} pi_hat={{pi_hat:.6f}}")
"""

VERIFY = """
import math

p = inside / n
std_error = 4 * math.sqrt(p * (1 - p) / n)  # binomial standard error, scaled by 4
abs_error = abs(pi_hat - math.pi)
print(f"pi_hat={pi_hat:.6f} math_pi={math.pi:.6f} abs_error={abs_error:.6f} "
      f"std_error={std_error:.6f} z={abs_error / std_error:.2f}")
"""


def _points(feedback: str | None) -> int | None:
    """A point count the person asked for ("use 10000 points", "n=1e5"), if any."""
    if not feedback:
        return None
    m = re.search(r"(\d[\d_,]*(?:\.\d+)?(?:e\d+)?)", feedback.lower())
    if not m:
        return None
    try:
        n = int(float(m.group(1).replace(",", "").replace("_", "")))
    except ValueError:
        return None
    return n if 100 <= n <= 50_000_000 else None


def play(t: Turn) -> Reply:
    sample = t.last("sample")
    if sample is None:
        return t.call(
            "sample",
            SAMPLE.format(n=DEFAULT_N),
            "The user wants an estimate of pi. A Monte Carlo estimate is the natural route: draw "
            "points uniformly in the unit square; the fraction that falls inside the quarter "
            "circle x^2 + y^2 <= 1 approaches pi/4. With n = 1,000,000 points the standard error "
            "should be around 0.0016, so I expect two or three correct decimals. I'll vectorise "
            "with numpy and fix the seed so the run is reproducible, and print the raw counts "
            "too, not just the estimate, so I can check the arithmetic afterwards.",
        )
    if sample.status == "rejected":
        asked = _points(sample.feedback)
        if asked and not t.never and t.count("sample") < 3:
            return t.call(
                "sample",
                SAMPLE.format(n=asked),
                f'The user rejected the sampling call and said: "{sample.feedback}". That is a '
                f"clear instruction: I'll use n = {asked:,} points instead. Fewer points means a "
                "larger standard error, so I'll keep that in mind when I compare with math.pi.",
            )
        why = (
            "the approval policy is 'never', so no code can run"
            if sample.never_policy
            else "the user rejected it"
            + (f' with the feedback "{sample.feedback}"' if sample.feedback else "")
        )
        return t.answer(
            f"My sampling call was not executed: {why}. I must not invent a simulated number, "
            "so I'll explain what I would have run instead.",
            "I did not estimate pi: the simulation was **not run** ("
            + why
            + "). The plan was a Monte Carlo estimate with 1,000,000 uniform points in the unit "
            "square (4 x the fraction inside the quarter circle), then a comparison with "
            "`math.pi`. Approve the `python` call (or run with `--approve auto`) to get a "
            "computed value.",
        )
    if sample.status == "error":
        if sample.error_name == "ModuleNotFoundError" and t.count("sample") < 2:
            return t.call(
                "sample",
                SAMPLE_PURE.format(n=200_000),
                f"numpy is not available in the sandbox ({sample.error_name}: "
                f"{sample.error_value}). I'll fall back to the standard library's random module; "
                "a pure-Python loop is slower, so 200,000 points.",
            )
        return t.answer(
            f"The sampling code failed: {sample.error_name}: {sample.error_value}. I have no "
            "estimate to report.",
            f"The simulation failed with `{sample.error_name}: {sample.error_value}`, so I have "
            f"no estimate. Output:\n\n```\n{quote(sample.output)}\n```",
        )
    got = values(sample.output)
    if "pi_hat" not in got or "inside" not in got or "n" not in got:
        return t.answer(
            "The output does not contain the inside/n/pi_hat line I printed (the code may have "
            "been edited), so I'll report the output as it is rather than guess.",
            f"The sampling call ran, but I could not find an estimate in its output:\n\n"
            f"```\n{quote(sample.output)}\n```",
        )
    pi_hat, inside, n = got["pi_hat"], got["inside"], got["n"]
    edited = (
        " (the user edited my code before it ran; I use their version's output)"
        if sample.edited
        else ""
    )
    verify = t.last("verify")
    if verify is None:
        return t.call(
            "verify",
            VERIFY,
            f"The simulation printed inside={inside} of n={n}{edited}, so pi_hat = 4 * {inside} "
            f"/ {n} = {pi_hat}. Before I state it I want to check it: compare with math.pi and "
            "compute the binomial standard error 4*sqrt(p(1-p)/n). If the error is within two or "
            "three standard errors, the estimate is consistent with sampling noise.",
        )
    if verify.status != "ok":
        why = (
            f"rejected ({verify.feedback})"
            if verify.status == "rejected" and verify.feedback
            else verify.status
            if verify.status != "error"
            else f"failed with {verify.error_name}: {verify.error_value}"
        )
        return t.answer(
            f"The verification call was {why}. I still have the estimate pi_hat = {pi_hat} from "
            f"inside={inside}, n={n}, but I'll say it was not checked.",
            f"**pi ~ {pi_hat}** (Monte Carlo, n = {n} points, {inside} inside the quarter circle)."
            f"\n\nNot verified: the comparison with `math.pi` was {why}.",
        )
    check = values(verify.output)
    needed = ("math_pi", "abs_error", "std_error", "z")
    if not all(k in check for k in needed):
        return t.answer(
            "The verification output is not in the format I printed; I'll quote it.",
            f"**pi ~ {pi_hat}** (Monte Carlo, n = {n}). The check printed:\n\n"
            f"```\n{quote(verify.output)}\n```",
        )
    try:
        z = float(check["z"])
    except ValueError:
        z = float("nan")
    verdict = (
        "well within sampling noise"
        if z < 2
        else "a little large but plausible"
        if z < 3
        else "suspiciously large: more points or a different seed would tell"
    )
    source = (
        f"from the sampling code as the user edited it (n = {n}, inside = {inside})"
        if sample.edited
        else f"from a Monte Carlo simulation with n = {n} points ({inside} fell inside the "
        "quarter circle; seeded, so the run is reproducible)"
    )
    return t.answer(
        f"The check printed math_pi={check['math_pi']}, abs_error={check['abs_error']} and "
        f"std_error={check['std_error']}, so the error is z = {check['z']} standard errors: "
        f"{verdict}. I can state the estimate with its uncertainty.",
        f"**pi ~ {pi_hat}** {source}.\n\n"
        f"Check: `math.pi` = {check['math_pi']}; the absolute error is {check['abs_error']}, "
        f"which is {check['z']} standard errors (standard error {check['std_error']}), "
        f"{verdict}.",
    )
