import pytest

from bus.meta import ObjectMeta
from nodeagent.backoff import (
    Backoff,
    BackoffPolicy,
    ImagePullBackoff,
    RestartBackoff,
    crash_loop_back_off,
    go_duration,
    image_pull_back_off,
)

FAST = BackoffPolicy(initial=0.1, cap=1.0, reset_after=2.0)


def delays(backoff: Backoff, run_lengths: list[float]) -> list[float]:
    """Fail after each run length in turn, restarting as soon as allowed; the delays chosen."""
    now, out = 0.0, []
    for length in run_lengths:
        started = now
        now += length
        out.append(backoff.delay_after(exit_at=now, started_at=started))
        now += backoff.remaining(now)
    return out


@pytest.mark.parametrize(
    ("policy", "run_lengths", "expected"),
    [
        (BackoffPolicy(), [1.0] * 8, [10, 20, 40, 80, 160, 300, 300, 300]),
        (BackoffPolicy(), [0.0] * 3, [10, 20, 40]),
        # a clean run of more than 10 min starts over
        (BackoffPolicy(), [1, 1, 1, 601, 1], [10, 20, 40, 10, 20]),
        # exactly 10 min is not more than 10 min
        (BackoffPolicy(), [1, 1, 600], [10, 20, 40]),
        (BackoffPolicy(), [1, 599.9, 1], [10, 20, 40]),
        (FAST, [0.01] * 7, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]),
        (FAST, [0.01, 0.01, 2.5, 0.01], [0.1, 0.2, 0.1, 0.2]),
        (BackoffPolicy(initial=3, cap=10, reset_after=60), [1] * 5, [3, 6, 10, 10, 10]),
    ],
)
def test_delay_sequence(policy: BackoffPolicy, run_lengths: list[float], expected: list[float]) -> None:
    assert delays(Backoff(policy), run_lengths) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("policy", "run_lengths", "expected"),
    [
        (BackoffPolicy(), [1.0] * 8, [0, 10, 20, 40, 80, 160, 300, 300]),
        # a clean run of more than 10 min restarts at once again, then starts over
        (BackoffPolicy(), [1, 1, 1, 601, 1, 1], [0, 10, 20, 0, 10, 20]),
        (BackoffPolicy(), [1, 1, 600], [0, 10, 20]),
        (FAST, [0.01] * 6, [0, 0.1, 0.2, 0.4, 0.8, 1.0]),
    ],
)
def test_restart_delay_sequence(
    policy: BackoffPolicy, run_lengths: list[float], expected: list[float]
) -> None:
    """The kubelet restarts a container at once the first time: CrashLoopBackOff from the second."""
    assert delays(RestartBackoff(policy), run_lengths) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("previous", "ran_for", "expected"),
    [
        (None, 0, 10),
        (None, 10_000, 10),
        (10, 5, 20),
        (160, 5, 300),
        (300, 5, 300),
        (300, 600, 300),
        (300, 600.5, 10),
    ],
)
def test_next_delay(previous: float | None, ran_for: float, expected: float) -> None:
    assert BackoffPolicy().next_delay(previous, ran_for=ran_for) == expected


@pytest.mark.parametrize(
    ("initial", "cap", "reset_after"),
    [(0, 1, 1), (-1, 1, 1), (2, 1, 1), (1, 2, 0)],
)
def test_policy_rejects_nonsense(initial: float, cap: float, reset_after: float) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(initial=initial, cap=cap, reset_after=reset_after)


@pytest.mark.parametrize(
    ("exit_at", "now", "remaining"),
    [(100.0, 100.0, 10.0), (100.0, 104.0, 6.0), (100.0, 110.0, 0.0), (100.0, 500.0, 0.0)],
)
def test_remaining(exit_at: float, now: float, remaining: float) -> None:
    backoff = Backoff()
    backoff.delay_after(exit_at=exit_at, started_at=exit_at - 1)
    assert backoff.remaining(now) == pytest.approx(remaining)


def test_reset_forgets_the_delay() -> None:
    backoff = Backoff()
    for _ in range(3):
        backoff.delay_after(exit_at=1.0, started_at=0.0)
    backoff.reset()
    assert backoff.delay is None
    assert backoff.remaining(0.0) == 0
    assert backoff.delay_after(exit_at=1.0, started_at=0.0) == 10


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        ([0, 10, 30, 70], [10, 20, 40, 80]),
        ([0, 10, 30, 70, 150, 310, 610], [10, 20, 40, 80, 160, 300, 300]),
        # a failure more than 10 min after the previous one starts over
        ([0, 10, 700, 710], [10, 20, 10, 20]),
    ],
)
def test_image_pull_backoff(failures: list[float], expected: list[float]) -> None:
    pulls = ImagePullBackoff()
    assert [pulls.failed(at) for at in failures] == expected


def test_image_pull_backoff_resets_on_success() -> None:
    pulls = ImagePullBackoff(FAST)
    assert [pulls.failed(at) for at in (0.0, 0.1, 0.3)] == pytest.approx([0.1, 0.2, 0.4])
    assert pulls.remaining(0.5) == pytest.approx(0.2)
    pulls.succeeded()
    assert pulls.delay is None
    assert pulls.remaining(0.5) == 0
    assert pulls.failed(0.6) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (10, "10s"),
        (80, "1m20s"),
        (160, "2m40s"),
        (300, "5m0s"),
        (3600, "1h0m0s"),
        (3725.25, "1h2m5.25s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_crash_loop_back_off_message() -> None:
    waiting = crash_loop_back_off(
        160, container="web", pod=ObjectMeta(name="web-1", namespace="default", uid="u-1")
    )
    assert waiting.reason == "CrashLoopBackOff"
    assert waiting.message == "back-off 2m40s restarting failed container=web pod=web-1_default(u-1)"


def test_image_pull_back_off_message() -> None:
    waiting = image_pull_back_off("nginx:nope")
    assert (waiting.reason, waiting.message) == ("ImagePullBackOff", 'Back-off pulling image "nginx:nope"')
