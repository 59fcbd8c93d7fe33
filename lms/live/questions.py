"""What a live question shows per type: its items and media to players, its answers' distribution to hosts.

The choice types and short answers keep what :mod:`lms.live.scoring` gives
them; the types of :mod:`lms.quizzes.question_types` get theirs here.

==========  ================================  =========================================================
type        ``question_ended.correct_answer``  ``distribution`` (``answer_count`` and ``question_ended``)
==========  ================================  =========================================================
slider      the number                        ``{"<low>..<high>": players}``: up to ten equal bins of the
                                              range, in order, zeros included
ordering    item ids in the correct order     ``{item id: players who put it in its correct position}``
poll        ``null``                          ``{option id: players}`` (every option, zeros included)
word_cloud  ``null``                          ``{answer: players}``: folded (case, accents, spaces), the
                                              most frequent first, at most 50; denied words never get in
==========  ================================  =========================================================
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from lms.live import scoring
from lms.quizzes.grading import fold_text
from lms.quizzes.question_types import ORDERING, POLL, SLIDER, UNGRADED, WORD_CLOUD, shuffled_items, slider

WORD_CLOUD_DISTRIBUTION_SIZE = 50
SLIDER_BINS = 10


def public_options(question_id: str, question_type: str, options: Any, correct_answer: Any) -> list[dict[str, str]]:
    """The options players see; an ordering question's items shuffled (the same on every instance)."""
    if question_type == ORDERING:
        return shuffled_items(question_id, [o for o in options or [] if isinstance(o, dict)], correct_answer)
    if question_type in (SLIDER, WORD_CLOUD):
        return []
    if question_type == POLL:
        return scoring.public_options("single_choice", options)
    return scoring.public_options(question_type, options)


def media(image_file_id: Any, video: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{image_url, video}`` when the question has either (``None`` otherwise)."""
    if image_file_id is None and not video:
        return None
    image_url = f"/api/v1/files/{image_file_id}/download" if image_file_id is not None else None
    return {"image_url": image_url, "video": dict(video) if video else None}


def revealed_answer(question_type: str, correct_answer: Any) -> Any:
    if question_type in UNGRADED:
        return None
    if question_type == SLIDER:
        return correct_answer
    if question_type == ORDERING:
        return [str(i) for i in correct_answer or []]
    return scoring.revealed_answer(question_type, correct_answer)


def distribution(
    question_type: str,
    options: list[dict[str, str]],
    answers: Iterable[Any],
    *,
    correct_answer: Any = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    if question_type == SLIDER:
        return _slider_bins(settings, answers)
    if question_type == ORDERING:
        order = [str(i) for i in correct_answer or []]
        counts = dict.fromkeys(order, 0)
        for answer in answers:
            if isinstance(answer, list) and len(answer) == len(order):
                for chosen, right in zip(answer, order, strict=True):
                    counts[right] += int(chosen == right)
        return counts
    if question_type == WORD_CLOUD:
        words = Counter(fold_text(a) for a in answers if isinstance(a, str) and fold_text(a))
        return dict(words.most_common(WORD_CLOUD_DISTRIBUTION_SIZE))
    if question_type == POLL:
        return scoring.distribution("single_choice", options, answers)
    return scoring.distribution(question_type, options, answers)


def poll_so_far(options: list[dict[str, str]], tallies: Mapping[str, int]) -> dict[str, int]:
    """A poll's distribution while it is open: every option (zeros included) from the answer script's tallies."""
    return {o["id"]: int(tallies.get(o["id"], 0)) for o in options}


def _slider_bins(settings: Mapping[str, Any] | None, answers: Iterable[Any]) -> dict[str, int]:
    model = slider(settings)
    if model is None:
        return {}
    steps = round((model.max - model.min) / model.step)
    bins = max(1, min(SLIDER_BINS, steps + 1))
    width = (model.max - model.min) / bins
    edges = [model.min + width * i for i in range(bins)] + [model.max]
    labels = [f"{edges[i]:g}..{edges[i + 1]:g}" for i in range(bins)]
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        if model.answer_error(answer) is not None:
            continue
        index = min(bins - 1, max(0, math.floor((answer - model.min) / width))) if width > 0 else 0
        counts[labels[index]] += 1
    return counts
