"""Time steps of an abundance series: how a year is cut into the steps BRITS sees.

``8day`` (the default) follows MOD09A1: composites start on day-of-year 1, 9, 17, ..., 361, so
a year has 46 steps and every granule falls in exactly one of them (its start date). ``monthly``
is calendar months (12 steps); ``Nd`` is bins of N days from 1 January (the last one shorter).
A dataset and every model trained on it record the step's name and the exact bins, and a model
refuses a series cut another way.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from landcoverpy.errors import InputValidationError, ModelError

DEFAULT_STEP = "8day"


@dataclass(frozen=True)
class StepSpec:
    name: str  # "8day", "monthly" or "<N>d"
    days: int | None  # bin length; None for calendar months

    def bins(self, year: int) -> list[tuple[dt.date, dt.date]]:
        """(first day, last day) of each step of ``year``."""
        if self.days is None:
            return [
                (dt.date(year, m, 1), dt.date(year + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1))
                for m in range(1, 13)
            ]
        start, out = dt.date(year, 1, 1), []
        while start.year == year:
            end = min(start + dt.timedelta(days=self.days - 1), dt.date(year, 12, 31))
            out.append((start, end))
            start = end + dt.timedelta(days=1)
        return out

    def describe(self, n_steps: int | None = None) -> str:
        what = (
            "calendar months"
            if self.days is None
            else ("MOD09A1 8-day composites" if self.name == "8day" else f"{self.days}-day steps")
        )
        return f"{what} ({n_steps} steps)" if n_steps is not None else what


def parse_step(text: str | None, step_days: int | None = None) -> StepSpec:
    """``8day`` | ``monthly`` | ``<N>d`` (e.g. ``16d``); ``step_days`` (the older option) wins when given."""
    if step_days is not None:
        if step_days < 1 or step_days > 366:
            raise InputValidationError(f"--step-days {step_days}: give a number of days between 1 and 366")
        return StepSpec("8day", 8) if step_days == 8 else StepSpec(f"{step_days}d", step_days)
    value = (text or DEFAULT_STEP).strip().lower()
    if value in ("8day", "8-day", "8d"):
        return StepSpec("8day", 8)
    if value in ("monthly", "month", "months"):
        return StepSpec("monthly", None)
    m = re.fullmatch(r"(\d{1,3})d", value)
    if m and 1 <= int(m.group(1)) <= 366:
        return StepSpec(f"{int(m.group(1))}d", int(m.group(1)))
    raise InputValidationError(
        f"unknown time step {text!r}: use 8day (MOD09A1, the default), monthly, or Nd (N days, e.g. 16d)"
    )


def step_of_record(record: dict) -> str:
    """The step name a dataset or model record carries (records from before steps were named
    were monthly unless their bins say otherwise)."""
    if record.get("step"):
        return str(record["step"])
    bins = record.get("steps") or []
    return "monthly" if len(bins) == 12 else f"{len(bins)} steps"


def check_same_steps(
    model_steps: list, model_step: str, model_id: str, series_steps: list, series_step: str, series_id: str
) -> None:
    """Raise when a model is given a series cut into other steps, naming both."""

    if len(model_steps) != len(series_steps) or model_step != series_step:
        raise ModelError(
            f"model {model_id} was trained on {model_step} steps ({len(model_steps)} a year) but {series_id} is cut "
            f"into {series_step} steps ({len(series_steps)}); rebuild the series with --step {model_step} or train "
            "a model on "
            f"{series_step} steps"
        )
