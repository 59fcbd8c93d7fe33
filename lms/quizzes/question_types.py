"""The question types beyond choice and short answer: their settings, and what players may see of them.

==========  =====================================  ====================================  ==================
type        settings (``settings``, stored JSONB)  correct answer (stored)               student's answer
==========  =====================================  ====================================  ==================
slider      ``{min, max, step, tolerance,          a number in ``[min, max]``            a number in
            zero_at}``                                                                   ``[min, max]`` on
                                                                                         the step grid
ordering    ``{partial_credit}``                   every item id, in the correct order   every item id, in
                                                                                         the chosen order
poll        none                                   none (``null``): nothing to get right an option id
word_cloud  none                                   none (``null``)                       short free text
==========  =====================================  ====================================  ==================

An ordering question's items are its ``options`` (3 to 6). Players never see
them in the correct order: :func:`shuffled_items` is the one deterministic
shuffle (seeded by the question id, so every live instance and every reload
agrees) and never leaves them in the correct order.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLIDER = "slider"
ORDERING = "ordering"
POLL = "poll"
WORD_CLOUD = "word_cloud"
# No correct answer, no points: the answers are only counted.
UNGRADED = (POLL, WORD_CLOUD)

MIN_ITEMS, MAX_ITEMS = 3, 6
WORD_CLOUD_MAX_LENGTH = 40
SLIDER_LIMIT = 1e9  # bounds, steps and answers stay well inside what a float holds exactly enough
MAX_SLIDER_STEPS = 100_000
GRID_TOLERANCE = 1e-9  # relative: 0.1 + 0.2 is on the 0.1 grid

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-SLIDER_LIMIT, le=SLIDER_LIMIT)]
Distance = Annotated[float, Field(allow_inf_nan=False, ge=0, le=2 * SLIDER_LIMIT)]


class SliderSettings(BaseModel):
    """A numeric estimate: full points within ``tolerance`` of the answer, then linearly less down to none at
    ``zero_at`` (a distance from the answer; absent or equal to ``tolerance``: nothing beyond the tolerance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: Finite = Field(description="The slider's lowest value.")
    max: Finite = Field(description="The slider's highest value (greater than `min`).")
    step: Annotated[float, Field(allow_inf_nan=False, gt=0, le=2 * SLIDER_LIMIT)] = Field(
        default=1, description=f"Values players can pick: `min + k × step`; at most {MAX_SLIDER_STEPS} steps."
    )
    tolerance: Distance = Field(default=0, description="Full points within this distance of the correct value.")
    zero_at: Distance | None = Field(
        default=None,
        description="The distance at which points reach zero (scaled down linearly from `tolerance`); "
        "default: `tolerance` (all or nothing).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SliderSettings:
        if self.max <= self.min:
            raise ValueError("max must be greater than min")
        if (self.max - self.min) / self.step > MAX_SLIDER_STEPS:
            raise ValueError(f"at most {MAX_SLIDER_STEPS} steps between min and max")
        if self.zero_at is not None and self.zero_at < self.tolerance:
            raise ValueError("zero_at must not be less than tolerance")
        return self

    def on_grid(self, value: float) -> bool:
        steps = (value - self.min) / self.step
        return abs(steps - round(steps)) <= GRID_TOLERANCE * max(1.0, abs(steps))

    def answer_error(self, value: Any) -> str | None:
        """Why ``value`` cannot be a slider answer (``None``: it can)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "expected a number"
        if not self.min <= value <= self.max:
            return f"expected a number from {self.min:g} to {self.max:g}"
        if not self.on_grid(value):
            return f"expected a multiple of the step {self.step:g} from {self.min:g}"
        return None


class OrderingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    partial_credit: bool = Field(
        default=False,
        description="Points for each item in its correct position (a share of the question's points); "
        "otherwise all or nothing.",
    )


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SETTINGS: dict[str, type[BaseModel]] = {SLIDER: SliderSettings, ORDERING: OrderingSettings}


def settings_model(question_type: str) -> type[BaseModel]:
    return SETTINGS.get(question_type, NoSettings)


def slider(settings: Mapping[str, Any] | None) -> SliderSettings | None:
    """Stored slider settings as their model (``None`` if they are missing or broken)."""
    try:
        return SliderSettings.model_validate(settings or {})
    except ValueError:
        return None


def partial_credit(settings: Mapping[str, Any] | None) -> bool:
    return bool((settings or {}).get("partial_credit"))


def public_settings(question_type: str, settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a player may see of the settings: a slider's range and step (never the tolerance)."""
    if question_type == SLIDER and settings:
        return {"min": settings.get("min"), "max": settings.get("max"), "step": settings.get("step", 1)}
    return None


def shuffled_items(
    question_id: str, items: Sequence[Mapping[str, Any]], correct_order: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """An ordering question's items as players get them: shuffled the same way everywhere, never already solved."""
    listed = [{"id": str(o["id"]), "text": str(o.get("text", ""))} for o in items]
    solved = [str(i) for i in correct_order] if correct_order else [o["id"] for o in listed]
    if len(listed) < 2:
        return listed
    seed = int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    shuffled = list(listed)
    while True:
        rng.shuffle(shuffled)
        if [o["id"] for o in shuffled] != solved:
            return shuffled
