"""The report's JSON contract (docs/tracking.md): what :func:`figures.build` returns and the
renderers read. Fields are only ever added; a breaking change bumps ``FORMAT_VERSION``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

FORMAT_VERSION = 1
# The keys whose values are counts of people's actions: hidden below --min-count.
COUNT_KEYS = frozenset({"total", "unique", "scanners", "clicks", "downloads", "views",
                        "viewers", "yes", "no", "feedback_yes", "feedback_no"})

# A count; None when it does not exist (unique figures under aggregate tracking) or is hidden
# because it is below --min-count.
Count = int | None
Rate = float | None


class Bounces(TypedDict):
    bounced_hard: int
    bounced_soft: int
    complaints: int
    unsubscribes: int


class Kpi(TypedDict):
    viewers: Count
    downloads: Count
    clicks: Count


class Clicks(TypedDict):
    total: Count
    unique: Count
    scanners: Count
    click_through_rate: Rate


class Downloads(TypedDict):
    total: Count
    unique: Count
    scanners: Count


class Views(TypedDict):
    total: Count
    scanners: Count


class Opens(TypedDict):
    total: Count
    unique: Count
    scanners: Count


class LinkRow(TypedDict):
    link_id: str
    kind: str
    text: str
    section: str
    url: str
    clicks: Count
    unique: Count
    scanners: Count


class ListRow(TypedDict):
    list: str
    sent: int
    bounced_hard: int
    bounced_soft: int
    complaints: int
    unsubscribes: int
    delivered: int
    clicks: Count
    unique: Count
    click_through_rate: Rate


class OrganisationRow(TypedDict):
    domain: str
    organisation: str
    delivered: int
    clicks: Count
    unique: Count
    click_through_rate: Rate


class DayRow(TypedDict):
    day: str
    clicks: Count
    downloads: Count
    views: Count
    scanners: Count


class TidyRow(TypedDict):
    list: str
    address: NotRequired[str]       # left out of JSON unless --include-addresses
    organisation: str
    reason: str
    status: str
    detail: str


class Classifier(TypedDict):
    version: int            # the scanner rules in force (classify.VERSION)
    versions: list[int]     # every version that classified this issue's stored events


class CommentRow(TypedDict):
    day: str            # the UTC day only: a comment is kept with nothing finer
    answer: str         # yes | no
    outlet: str
    text: str


class FeedbackFigures(TypedDict):
    question: str
    yes_text: str
    no_text: str
    yes: Count
    no: Count
    scanners: Count
    comments: list[CommentRow]


class Answers(TypedDict):
    yes: Count
    no: Count


class OutletRow(TypedDict):
    id: str             # email, an outlet of newsletter.yaml, direct or unknown
    name: str
    kind: str
    views: Count
    downloads: Count
    clicks: Count       # downloads included
    feedback: Answers
    scanners: Count     # probable scanners' events of every kind, always apart


class ReachFigures(TypedDict):
    views: Count
    downloads: Count
    clicks: Count
    feedback: Answers


class Reach(TypedDict):
    email: ReachFigures       # the direct email audience
    reshared: ReachFigures    # every other outlet, direct and unknown included


# A breakdown's rows (--by outlet flattens each outlet's answers into feedback_yes/_no).
Row = LinkRow | ListRow | OrganisationRow | DayRow | TidyRow | CommentRow | dict[str, Any]


class Report(TypedDict):
    """Every figure of one issue's report: what ``--format json`` prints."""

    format: int
    issue: str
    subject: str
    tracking: str
    generated_at: str
    include_scanners: bool
    min_count: int
    sent: int
    delivered: int
    bounces: Bounces
    kpi: Kpi
    clicks: Clicks
    downloads: Downloads
    views: Views
    opens: Opens | None
    scanner_reasons: dict[str, Count]
    classifier: Classifier
    links: list[LinkRow]
    lists: list[ListRow]
    organisations: list[OrganisationRow]
    days: list[DayRow]
    lists_to_tidy: list[TidyRow]
    feedback: FeedbackFigures | None      # None: the issue asked nothing, nobody answered
    outlets: list[OutletRow]
    reach: Reach


# --- report --all: every issue side by side ------------------------------------------------


class IssueLine(TypedDict):
    """One issue in ``report --all``."""

    issue: str
    subject: str
    date: str                 # the UTC day of its first send
    tracking: str
    sent: int
    delivered: int
    views: Count
    downloads: Count
    clicks: Count
    unique_clickers: Count    # individual tracking only
    feedback: Answers
    unsubscribes: int
    bounces: int


# Counts hidden below --min-count are None here too; the years add up every issue's figures
# before any is hidden.
class YearLine(TypedDict):
    year: str                 # 2026, or "2025-04-01 to 2026-03-31" from strategy_start
    issues: int
    sent: int
    delivered: int
    views: Count
    downloads: Count
    clicks: Count
    feedback: Answers
    unsubscribes: int
    bounces: int


AcrossReport = TypedDict("AcrossReport", {
    "format": int, "generated_at": str, "include_scanners": bool, "min_count": int,
    "from": str | None, "to": str | None, "strategy_start": str | None,
    "issues": list[IssueLine], "years": list[YearLine]})
