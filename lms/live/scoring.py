"""Live quiz scoring: points by mode, streak bonus, double points, ranks, teams; options and distributions.

The one place for live points. Whether an answer is correct is decided by the
one grader, :func:`lms.quizzes.grading.is_correct`, exactly as for self-paced
attempts. What players send per question type (realtime/README.md, "Live question types"): an
option id (``single_choice``; ``"true"``/``"false"`` for ``true_false``), a
list of option ids (``multiple_choice``), a string (``short_answer``).

A session's :class:`ScoringRules` (chosen when the host opens it) decide a
correct answer's points; wrong or missing answers earn 0 in every mode.
``t`` is the time from the question's start to the answer's acceptance,
clamped to ``[0, T]`` (``T`` the time limit), so a correct answer inside the
grace after the deadline scores as one at the deadline.

- ``speed`` (the default, the protocol's rule):
  ``round(points × 1000 × (1 − t / T / 2))``, ``points`` the question's stored
  weight (1 by default): between half and all of ``points × 1000``.
- ``kahoot_like``: Kahoot's rule on Kahoot's scale, ``round((1 − (t/T)/2) × 1000)``:
  every question is Kahoot's standard 1000-point question whatever its stored
  weight (Kahoot has no per-question weights, only standard and double).
  On a quiz whose questions all weigh 1 it gives what ``speed`` gives.
- ``accuracy``: no time factor, ``round(points × 1000)`` for a correct answer.

A double-points question (``quiz_questions.double_points``) awards exactly
twice what the mode gives it (doubled after rounding). The streak bonus, when
the session has one, is added on top and is not doubled: a correct answer
that makes a streak of ``n`` correct answers in a row (this one included)
adds ``streak_bonus_points × min(n − 1, 5)`` (nothing for the first correct
answer, at most five steps, as Kahoot caps its streak bonus). A wrong or
missing answer resets the streak. Halves are rounded up everywhere.

Teams: a team's score is the average of its members' scores (rounded, halves
up), so a team's size does not decide; kicked players are not members.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from lms.quizzes.grading import (
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    SINGLE_CHOICE,
    TRUE_FALSE,
    accepted_answers,
    as_bool,
    correct_options,
    normalize_text,
)

CHOICE_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE)

TRUE_FALSE_OPTIONS = ({"id": "true", "text": "True"}, {"id": "false", "text": "False"})
# Distinct short answers reported in a question's distribution (most frequent first).
SHORT_ANSWER_DISTRIBUTION_SIZE = 20


def public_options(question_type: str, options: Any) -> list[dict[str, str]]:
    """The options players see: ``[{id, text}]``; true/false gets its two if the quiz stored none."""
    listed = [{"id": str(o["id"]), "text": str(o.get("text", ""))} for o in options or [] if isinstance(o, dict)]
    if question_type == TRUE_FALSE and not listed:
        return [dict(o) for o in TRUE_FALSE_OPTIONS]
    if question_type == SHORT_ANSWER:
        return []
    return listed


def revealed_answer(question_type: str, correct_answer: Any) -> Any:
    """The correct answer as ``question_ended`` shows it, in the shape players answer in."""
    if question_type == TRUE_FALSE:
        return "true" if as_bool(correct_answer) else "false"
    if question_type == MULTIPLE_CHOICE:
        return sorted(correct_options(correct_answer))
    if question_type == SHORT_ANSWER:
        return accepted_answers(correct_answer)
    return str(correct_answer)


SPEED, KAHOOT_LIKE, ACCURACY = "speed", "kahoot_like", "accuracy"
SCORING_MODES = (SPEED, KAHOOT_LIKE, ACCURACY)
# Kahoot's standard question: what kahoot_like awards every question (before doubling).
KAHOOT_STANDARD_POINTS = 1000
STREAK_BONUS_MAX_STEPS = 5
MAX_STREAK_BONUS_POINTS = 1000
DEFAULT_STREAK_BONUS_POINTS = 100
MIN_TEAMS, MAX_TEAMS = 2, 10
TEAM_NAMES = ("Red", "Blue", "Green", "Yellow", "Purple", "Orange", "Teal", "Pink", "Grey", "Brown")


@dataclass(frozen=True)
class ScoringRules:
    """How a session awards points: its mode and its streak bonus per step (0: none)."""

    mode: str = SPEED
    streak_bonus_points: int = 0

    def public(self) -> dict[str, Any]:
        """As sessions show it (REST, snapshots, results): ``{mode, streak_bonus, streak_bonus_points}``."""
        return {
            "mode": self.mode,
            "streak_bonus": self.streak_bonus_points > 0,
            "streak_bonus_points": self.streak_bonus_points,
        }

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> ScoringRules:
        """From a session row or a stored snapshot; absent (older sessions): today's rule."""
        doc = doc or {}
        mode = str(doc.get("scoring") or doc.get("mode") or SPEED)
        return cls(mode if mode in SCORING_MODES else SPEED, int(doc.get("streak_bonus_points") or 0))


def points_for(
    points: Decimal | int | float,
    *,
    correct: bool,
    elapsed_ms: int,
    time_limit_ms: int,
    mode: str = SPEED,
    double: bool = False,
    share: Decimal | int = 1,
) -> int:
    """A question's points for one answer (no streak bonus): the module's rules for ``mode``.

    ``share``: the grader's partial credit (0 to 1) of what a correct answer earns.
    """
    if not correct:
        return 0
    base = _mode_points(points, elapsed_ms=elapsed_ms, time_limit_ms=time_limit_ms, mode=mode, share=share)
    return 2 * base if double else base


def streak_bonus(streak: int, bonus_points: int) -> int:
    """The bonus a correct answer earns that makes a streak of ``streak`` (itself included)."""
    return max(0, bonus_points) * min(max(streak - 1, 0), STREAK_BONUS_MAX_STEPS)


def award(
    points: Decimal | int | float,
    *,
    correct: bool,
    elapsed_ms: int,
    time_limit_ms: int,
    rules: ScoringRules,
    double: bool = False,
    streak: int = 0,
    share: Decimal | int = 1,
) -> tuple[int, int]:
    """``(total, bonus)`` for one answer: the question's points by ``rules`` plus the streak bonus."""
    if not correct:
        return 0, 0
    base = points_for(
        points,
        correct=True,
        elapsed_ms=elapsed_ms,
        time_limit_ms=time_limit_ms,
        mode=rules.mode,
        double=double,
        share=share,
    )
    bonus = streak_bonus(streak, rules.streak_bonus_points)
    return base + bonus, bonus


def _mode_points(
    points: Decimal | int | float, *, elapsed_ms: int, time_limit_ms: int, mode: str, share: Decimal | int
) -> int:
    full = Decimal(KAHOOT_STANDARD_POINTS) if mode == KAHOOT_LIKE else Decimal(str(points)) * 1000
    milli = full * Decimal(str(share)) if share != 1 else full
    if mode == ACCURACY:
        return int(milli.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return _by_time(milli, elapsed_ms, time_limit_ms)


def _by_time(milli: Decimal, elapsed_ms: int, time_limit_ms: int) -> int:
    """``round(milli × (1 − t / T / 2))``, halves up, ``t`` clamped to ``[0, T]``."""
    time_limit_ms = max(time_limit_ms, 1)
    elapsed = min(max(elapsed_ms, 0), time_limit_ms)
    if milli == milli.to_integral_value():
        # Exact in integers, and what runs for every player of every question:
        # round(milli × (2·limit − elapsed) / (2·limit)), halves up.
        numerator, denominator = int(milli) * (2 * time_limit_ms - elapsed), 2 * time_limit_ms
        return (2 * numerator + denominator) // (2 * denominator)
    value = milli * (1 - Decimal(elapsed) / Decimal(time_limit_ms) / 2)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ranks(scores: Mapping[str, int]) -> dict[str, int]:
    """Competition ranking (1, 2, 2, 4): equal scores share a rank."""
    ordered = sorted(scores.values(), reverse=True)
    first_at: dict[int, int] = {}
    for position, score in enumerate(ordered, start=1):
        first_at.setdefault(score, position)
    return {player: first_at[score] for player, score in scores.items()}


def distribution(question_type: str, options: list[dict[str, str]], answers: Iterable[Any]) -> dict[str, int]:
    """How many players chose each option (every option listed, zeros included).

    For short answers: how many gave each (normalised) answer, the most frequent first.
    """
    if question_type == SHORT_ANSWER:
        counts = Counter(normalize_text(a) for a in answers if isinstance(a, str) and normalize_text(a))
        return dict(counts.most_common(SHORT_ANSWER_DISTRIBUTION_SIZE))
    result = {o["id"]: 0 for o in options}
    for answer in answers:
        chosen = answer if isinstance(answer, list) else [answer]
        for option in chosen:
            if isinstance(option, str) and option in result:
                result[option] += 1
    return result


def team_name(team: int) -> str:
    return TEAM_NAMES[team - 1] if 1 <= team <= len(TEAM_NAMES) else f"Team {team}"


def teams_of(team_count: int | None) -> list[dict[str, Any]]:
    """A session's teams as clients list them: ``[{team, name}]`` (none without team mode)."""
    return [{"team": t, "name": team_name(t)} for t in range(1, (team_count or 0) + 1)]


def smallest_team(team_count: int, members: Iterable[int | None] | Mapping[int, int]) -> int:
    """The team a player who did not pick one joins: the one with fewest members (the lowest number on ties).

    ``members``: each member's team, or the members per team.
    """
    sizes = members if isinstance(members, Mapping) else Counter(t for t in members if t is not None)
    return min(range(1, team_count + 1), key=lambda t: (sizes.get(t, 0), t))


def team_standings(team_count: int | None, members: Iterable[tuple[int | None, int]]) -> list[dict[str, Any]]:
    """The team leaderboard, best first: ``[{team, name, score, rank, members}]``.

    ``members`` are ``(team, score)`` of the players who count (kicked ones
    left out). A team's score is its members' average, rounded (halves up);
    an empty team scores 0. Ranks compare the shown scores (1, 2, 2, 4).
    """
    if not team_count:
        return []
    totals: dict[int, list[int]] = {t: [] for t in range(1, team_count + 1)}
    for team, score in members:
        if team in totals:
            totals[team].append(score)
    scores = {str(t): _rounded_mean(s) for t, s in totals.items()}
    ranked = ranks(scores)
    listed = [
        {"team": t, "name": team_name(t), "score": scores[str(t)], "rank": ranked[str(t)], "members": len(s)}
        for t, s in totals.items()
    ]
    listed.sort(key=lambda entry: (entry["rank"], entry["team"]))
    return listed


def _rounded_mean(scores: list[int]) -> int:
    if not scores:
        return 0
    mean = Fraction(sum(scores), len(scores))
    return int((mean * 2 + 1) // 2)
