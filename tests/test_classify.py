"""The scanner rules one by one, at their edges (the classifier alone, no database).

Each test builds the hits one request would make (``events.Hit``), feeds them to a
``Classifier`` the way the event writer does (batches in time order) and reads the reasons.
"""

from __future__ import annotations

import pytest

from newsletter.tracking import classify
from newsletter.tracking.events import Hit

T = 1_780_000_000.0  # when the message was delivered
PERSON = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/140.0"
SCANNER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"


class Deliveries:
    """Delivery times as the writer would read them from the ledger."""

    def __init__(self, times: dict[str, float] | None = None) -> None:
        self.times = times if times is not None else {"p1": T, "p2": T, "p3": T}

    def of(self, issue: str, pseudonym: str) -> float | None:
        return self.times.get(pseudonym)

    def any_between(self, issue: str, start: float, end: float) -> bool:
        return any(start <= t <= end for t in self.times.values())


def click(at: float, link: str, who: str = "p1", ip: str = "home", agent: str = PERSON,
          reasons: list[str] | None = None) -> Hit:
    return Hit(at=at, issue="spring", kind="click", link_id=link, pseudonym=who,
               user_agent=agent, ip_hash=ip, reasons=list(reasons or []))


def view(at: float, ip: str = "home", agent: str = PERSON) -> Hit:
    return Hit(at=at, issue="spring", kind="view", user_agent=agent, ip_hash=ip)


class Run:
    """A classifier fed batch by batch; remembers which stored hits each batch changed."""

    def __init__(self, rules: classify.Rules | None = None,
                 deliveries: Deliveries | None = None) -> None:
        self.classifier = classify.Classifier(rules or classify.Rules(networks=()))
        self.deliveries = deliveries or Deliveries()
        self.changed: list[Hit] = []

    def batch(self, *hits: Hit) -> list[Hit]:
        self.changed = self.classifier.observe(list(hits), self.deliveries)  # type: ignore[arg-type]
        return list(hits)


def reasons(*hits: Hit) -> list[str]:
    return [classify.join_reasons(h.reasons) for h in hits]


# --- after-delivery -----------------------------------------------------------------------

def test_an_eager_reader_clicking_within_a_minute_is_a_person() -> None:
    run = Run()
    hits = run.batch(click(T + 20, "a1"), click(T + 50, "d1"))
    assert reasons(*hits) == ["", ""]


def test_three_links_within_a_minute_of_delivery_are_a_scanner() -> None:
    run = Run()
    hits = run.batch(click(T + 20, "a1", ip="gw", agent=SCANNER),
                     click(T + 40, "d1", ip="gw", agent=SCANNER),
                     click(T + 59, "e1", ip="gw", agent=SCANNER))
    assert reasons(*hits) == ["after-delivery"] * 3


def test_the_third_link_after_the_minute_is_not_after_delivery() -> None:
    run = Run()
    hits = run.batch(click(T + 20, "a1"), click(T + 40, "d1"), click(T + 61, "e1"))
    assert reasons(*hits) == ["", "", ""]


def test_delayed_delivery_counts_from_the_delivered_time_not_the_send() -> None:
    delivered = T + 1200  # greylisted: accepted 20 minutes after we sent it
    run = Run(deliveries=Deliveries({"p1": delivered}))
    hits = run.batch(*(click(delivered + 3 + i, link, ip="gw", agent=SCANNER)
                       for i, link in enumerate(("a1", "d1", "e1"))))
    assert reasons(*hits) == ["after-delivery"] * 3
    # the same pass measured from when we sent it would look like a person an hour later
    late = Run(deliveries=Deliveries({"p1": T}))
    hits = late.batch(*(click(delivered + 3 + i * 10, link, ip="gw", agent=SCANNER)
                        for i, link in enumerate(("a1", "d1", "e1"))))
    assert reasons(*hits) == ["", "", ""]


# --- burst ----------------------------------------------------------------------------------

def test_three_links_opened_in_tabs_are_a_person() -> None:
    run = Run()
    hits = run.batch(click(T + 3600, "a1"), click(T + 3600.4, "d1"), click(T + 3600.9, "e1"))
    assert reasons(*hits) == ["", "", ""]


def test_four_links_within_two_seconds_are_a_burst_even_across_batches() -> None:
    run = Run()
    first = run.batch(click(T + 3600, "a1", ip="gw", agent=SCANNER),
                      click(T + 3600.5, "d1", ip="gw", agent=SCANNER))
    second = run.batch(click(T + 3601, "e1", ip="gw", agent=SCANNER),
                       click(T + 3601.9, "f1", ip="gw", agent=SCANNER))
    assert reasons(*first, *second) == ["burst"] * 4
    assert {id(h) for h in run.changed} >= {id(h) for h in first}  # stored rows to update


def test_four_links_spread_over_more_than_two_seconds_are_no_burst() -> None:
    run = Run()
    hits = run.batch(*(click(T + 3600 + i * 0.7, link)
                       for i, link in enumerate(("a1", "d1", "e1", "f1"))))
    assert reasons(*hits) == ["", "", "", ""]


def test_burst_is_per_client_so_a_person_inside_a_scanners_pass_is_left_alone() -> None:
    run = Run()
    hits = run.batch(click(T + 3600, "a1", ip="gw", agent=SCANNER),
                     click(T + 3600.3, "d1", ip="gw", agent=SCANNER),
                     click(T + 3600.5, "a1", ip="home"),   # the recipient, at the same moment
                     click(T + 3600.6, "e1", ip="gw", agent=SCANNER),
                     click(T + 3600.9, "f1", ip="gw", agent=SCANNER))
    scanner = [h for h in hits if h.ip_hash == "gw"]
    assert all("burst" in h.reasons for h in scanner)
    assert reasons(hits[2]) == [""]


# --- many-links -----------------------------------------------------------------------------

def test_eight_links_within_ten_minutes_are_a_scanners_slow_pass() -> None:
    run = Run()
    links = [f"l{i}" for i in range(8)]
    hits = run.batch(*(click(T + 900 + i * 70, link, ip="sandbox", agent=SCANNER)
                       for i, link in enumerate(links)))
    assert reasons(*hits) == ["many-links"] * 8


def test_a_keen_reader_opening_seven_links_is_a_person() -> None:
    run = Run()
    hits = run.batch(*(click(T + 900 + i * 60, f"l{i}") for i in range(7)))
    assert reasons(*hits) == [""] * 7


# --- honeypot and the verdict carried -------------------------------------------------------

def test_honeypot_verdict_carries_to_the_clients_earlier_hits_and_its_views() -> None:
    run = Run()
    pass_ = run.batch(click(T + 300, "a1", ip="gw", agent=SCANNER),
                      view(T + 302, ip="gw", agent=SCANNER))
    later = run.batch(click(T + 330, "hp", ip="gw", agent=SCANNER, reasons=["honeypot"]),
                      view(T + 330.2, ip="gw", agent=SCANNER))  # following its redirect
    assert reasons(*pass_, *later) == ["same-client", "same-client", "honeypot", "same-client"]
    assert {id(h) for h in run.changed} == {id(h) for h in pass_} | {id(later[1])}


def test_honeypot_verdict_reaches_other_recipients_and_views_only_within_ten_minutes() -> None:
    run = Run()
    run.batch(click(T + 300, "hp", who="p1", ip="gw", agent=SCANNER, reasons=["honeypot"]))
    near = run.batch(click(T + 800, "a1", who="p2", ip="gw", agent=SCANNER),
                     view(T + 850, ip="gw", agent=SCANNER))
    far = run.batch(click(T + 7200, "a1", who="p3", ip="gw", agent=SCANNER),
                    view(T + 7300, ip="gw", agent=SCANNER))
    assert reasons(*near, *far) == ["same-client", "same-client", "", ""]


def test_a_re_check_hours_later_by_the_same_client_is_still_a_scanner() -> None:
    run = Run()
    run.batch(click(T + 10, "a1", ip="gw", agent=SCANNER),
              click(T + 11, "hp", ip="gw", agent=SCANNER, reasons=["honeypot"]))
    [recheck] = run.batch(click(T + 6 * 3600, "d1", ip="gw", agent=SCANNER))
    assert reasons(recheck) == ["same-client"]


def test_a_person_behind_the_nat_of_an_on_premises_scanner_is_a_person() -> None:
    run = Run()
    nat = "office"
    scan = run.batch(*(click(T + 5 + i * 0.3, link, who="p2", ip=nat, agent=SCANNER)
                       for i, link in enumerate(("a1", "d1", "e1"))),
                     click(T + 6, "hp", who="p2", ip=nat, agent=SCANNER, reasons=["honeypot"]))
    # a colleague, same address, own browser, minutes later; the scanned recipient next day
    people = run.batch(click(T + 240, "a1", who="p1", ip=nat),
                       view(T + 250, ip=nat),
                       click(T + 86400, "d1", who="p2", ip=nat))
    assert all(h.reasons for h in scan)
    assert reasons(*people) == ["", "", ""]


def test_a_carried_verdict_does_not_rename_a_hits_own_reason() -> None:
    run = Run()
    hits = run.batch(click(T + 500, "a1", ip="gw", agent="curl/8.5", reasons=["scanner-agent"]),
                     click(T + 501, "hp", ip="gw", agent="curl/8.5",
                           reasons=["honeypot", "scanner-agent"]))
    assert reasons(*hits) == ["scanner-agent", "honeypot,scanner-agent"]


def test_head_is_a_verdict_about_the_whole_agent() -> None:
    run = Run()
    hits = run.batch(click(T + 5, "a1", ip="eop", agent="", reasons=["head", "no-agent"]),
                     click(T + 6, "d1", ip="eop", agent=""))
    assert reasons(*hits) == ["head,no-agent", "same-client"]


# --- time-of-click checks on rewritten links ------------------------------------------------

def test_a_check_just_before_the_persons_click_is_the_scanner() -> None:
    run = Run()
    check, person = run.batch(click(T + 7200, "d1", ip="vendor", agent=SCANNER),
                              click(T + 7200.4, "d1", ip="home"))
    assert reasons(check, person) == ["link-check", ""]


def test_a_check_seconds_after_the_persons_click_is_the_scanner() -> None:
    run = Run()
    [person] = run.batch(click(T + 7200, "d1", ip="home"))
    [check] = run.batch(click(T + 7225, "d1", ip="vendor", agent=SCANNER))
    assert reasons(person, check) == ["", "link-check"]


def test_the_same_link_again_later_or_from_the_same_address_is_a_person() -> None:
    run = Run()
    hits = run.batch(click(T + 7200, "d1", ip="home"), click(T + 7201, "d1", ip="home"),
                     click(T + 7300, "d1", ip="phone"))
    assert reasons(*hits) == ["", "", ""]


def test_a_check_already_flagged_leaves_the_person_alone() -> None:
    run = Run()
    hits = run.batch(click(T + 7200, "d1", ip="vendor", agent="Microsoft Office/16.0",
                           reasons=["scanner-agent", "scanner-network"]),
                     click(T + 7200.2, "d1", ip="home"),
                     click(T + 7220, "d1", ip="vendor2", agent="Microsoft Office/16.0",
                           reasons=["scanner-agent"]))
    assert reasons(*hits)[1] == ""


# --- views of the web version ---------------------------------------------------------------

@pytest.mark.parametrize(("after", "expected"), [(3.0, "after-delivery"), (15.0, "after-delivery"),
                                                 (16.0, ""), (3600.0, "")])
def test_a_view_seconds_after_a_delivery_is_a_scanner(after: float, expected: str) -> None:
    run = Run(deliveries=Deliveries({"p1": T}))
    [hit] = run.batch(view(T + after, ip="cloud", agent=SCANNER))
    assert reasons(hit) == [expected]


def test_views_join_the_verdicts_of_their_agents_clicks() -> None:
    run = Run()
    hits = run.batch(view(T + 3600, ip="gw", agent=SCANNER),
                     *(click(T + 3601 + i * 0.2, link, ip="gw", agent=SCANNER)
                       for i, link in enumerate(("a1", "d1", "e1", "f1"))),
                     view(T + 3700, ip="gw", agent=SCANNER), view(T + 5000, ip="gw",
                                                                 agent=SCANNER))
    assert reasons(*hits) == ["same-client"] + ["burst"] * 4 + ["same-client", ""]


def test_memory_is_bounded_by_forgetting_silent_clients() -> None:
    run = Run(classify.Rules(networks=(), memory_seconds=100))
    run.batch(click(T, "a1"))
    run.classifier._forget(T + 101)
    assert run.classifier._clients == {} and run.classifier._agents == {}
