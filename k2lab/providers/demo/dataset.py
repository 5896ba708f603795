"""Demo "analyze a dataset": build a small synthetic sales table, summarise it, plot it.

The plot makes a rich display output (``image/png``) for the faces to show. Every figure in the
answer is read from the tool output; if the plot call is rejected the analysis goes on without it.
"""

from __future__ import annotations

from k2lab.providers.demo.turn import Reply, Turn, quote, values, why_not_run

MAKE = """
import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
days = pd.date_range("2026-01-01", periods=90, freq="D")
base = {"North": 120, "South": 95, "East": 140, "West": 80}
frames = []
for region, level in base.items():
    temp = 10 + 8 * np.sin(np.arange(len(days)) / 14) + rng.normal(0, 2, len(days))
    trend = np.linspace(0, rng.uniform(-20, 30), len(days))
    sales = level + trend + 1.5 * temp + rng.normal(0, 10, len(days))
    frames.append(pd.DataFrame({"day": days, "region": region,
                                "temp_c": temp.round(1), "sales": sales.round(2)}))
df = pd.concat(frames, ignore_index=True)
print(f"rows={len(df)} columns={list(df.columns)}")
print(df.head().to_string())
"""

SUMMARY = """
summary = (df.groupby("region")["sales"].agg(["mean", "std", "sum"])
           .round(2).sort_values("mean", ascending=False))
print(summary.to_string())
first = df[df.day < days[30]].groupby("region")["sales"].mean()
last = df[df.day >= days[-30]].groupby("region")["sales"].mean()
growth = ((last / first - 1) * 100).round(1).sort_values(ascending=False)
corr = df["sales"].corr(df["temp_c"])
print(f"top_region={summary.index[0]} top_mean={summary['mean'].iloc[0]:.2f}")
print(f"bottom_region={summary.index[-1]} bottom_mean={summary['mean'].iloc[-1]:.2f}")
print(f"fastest_growth={growth.index[0]} growth_pct={growth.iloc[0]:+.1f}")
print(f"slowest_growth={growth.index[-1]} slowest_pct={growth.iloc[-1]:+.1f}")
print(f"corr_sales_temp={corr:.3f}")
"""

PLOT = """
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 4))
for region, g in df.groupby("region"):
    ax.plot(g["day"], g["sales"].rolling(7).mean(), label=region)
ax.set(title="Daily sales by region (7-day mean)", xlabel="day", ylabel="sales")
ax.legend()
fig.autofmt_xdate()
plt.show()
print(f"plotted_lines={len(ax.lines)}")
"""


def play(t: Turn) -> Reply:
    make = t.last("make the data")
    if make is None:
        return t.call(
            "make the data",
            MAKE,
            "There is no dataset attached, so I'll build a small synthetic one I can reason "
            "about: 90 days of sales for four regions, with a per-region level, a random trend, "
            "a temperature signal that drives sales a little, and noise. Seeded for "
            "reproducibility. I'll print the shape and the first rows to check it looks right.",
        )
    if make.status != "ok":
        return _stopped(make.status, make.feedback, make.never_policy, make.output)
    shape = values(make.output).get("rows", "?")
    summary = t.last("summarize")
    if summary is None:
        return t.call(
            "summarize",
            SUMMARY,
            f"The table has rows={shape} and looks as intended. Next: the mean, spread and total "
            "per region, the growth from the first to the last 30 days, and the correlation of "
            "sales with temperature. I'll print the key figures as key=value lines so I can "
            "quote them exactly.",
        )
    if summary.status != "ok":
        return _stopped(
            summary.status, summary.feedback, summary.never_policy, summary.output, made=True
        )
    v = values(summary.output)
    needed = ("top_region", "top_mean", "bottom_region", "bottom_mean", "corr_sales_temp")
    if not all(k in v for k in needed):
        return t.answer(
            "The summary output is not in the format I printed; I'll quote it.",
            f"Summary of the synthetic sales data:\n\n```\n{quote(summary.output, 1500)}\n```",
        )
    plot = t.last("plot")
    if plot is None and not t.never:
        return t.call(
            "plot",
            PLOT,
            f"{v['top_region']} sells the most on average ({v['top_mean']}), {v['bottom_region']} "
            f"the least ({v['bottom_mean']}); the correlation of sales with temperature is "
            f"{v['corr_sales_temp']}. A picture will show whether the trends are smooth or "
            "noisy: 7-day rolling means per region.",
        )
    plot_line = "The plot call drew the 7-day rolling mean per region (its image output)."
    if plot is None or plot.status != "ok":
        why = (
            f'rejected: "{plot.feedback}"'
            if plot is not None and plot.status == "rejected" and plot.feedback
            else "not drawn"
        )
        plot_line = f"No plot: the plotting call was {why}."
    try:
        corr = float(v["corr_sales_temp"])
        strength = "strong" if abs(corr) > 0.6 else "moderate" if abs(corr) > 0.3 else "weak"
    except ValueError:
        strength = "unclear"
    table = _summary_table(summary.output)
    return t.answer(
        f"I have what I need: {v['top_region']} leads, {v['bottom_region']} trails, the "
        f"temperature link is {strength} ({v['corr_sales_temp']}). "
        f"{'The plot ran.' if plot is not None and plot.status == 'ok' else plot_line}",
        f"**Synthetic sales, 4 regions x 90 days ({shape} rows).**\n\n"
        f"- Highest average daily sales: **{v['top_region']}** ({v['top_mean']}); lowest: "
        f"**{v['bottom_region']}** ({v['bottom_mean']}).\n"
        f"- Fastest growth from the first to the last 30 days: {v.get('fastest_growth', '?')} "
        f"({v.get('growth_pct', '?')} %); slowest: {v.get('slowest_growth', '?')} "
        f"({v.get('slowest_pct', '?')} %).\n"
        f"- Sales vs temperature: correlation {v['corr_sales_temp']} ({strength}).\n\n"
        f"{table}\n\n{plot_line}",
    )


def _summary_table(output: str) -> str:
    """The per-region table as printed by pandas, kept verbatim in a code block."""
    lines = [ln for ln in output.splitlines() if "=" not in ln]
    return "```\n" + "\n".join(lines).strip("\n") + "\n```" if lines else ""


def _stopped(
    status: str, feedback: str | None, never: bool, output: str, made: bool = False
) -> Reply:
    if status == "rejected":
        why = why_not_run(feedback, never)
        if made:  # the table exists in the sandbox; only the summary did not run
            return Turn.answer(
                f"The summary call was not executed: {why}. The table was made, but I have no "
                "figures from it, and I won't invent any.",
                f"I made the synthetic table, but the summary was **not run** ({why}), so I have "
                "no figures to report. Approve the summary call to get them.",
            )
        return Turn.answer(
            f"The call was not executed: {why}. Without the data I can't analyse anything.",
            f"I could not analyse the dataset: {why}, so no code ran.",
        )
    return Turn.answer(
        f"The code did not run cleanly ({status}); I'll report the output instead of guessing.",
        f"The analysis stopped: the code did not run cleanly.\n\n```\n{quote(output)}\n```",
    )
