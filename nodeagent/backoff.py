"""Restart and image-pull back-off, with the kubelet's arithmetic.

A container that keeps failing must not be restarted in a tight loop, nor an image that cannot
be pulled pulled again at once: both would burn the node and flood the event log. The kubelet
restarts a container at once after its first failure, then waits 10 s, doubling the wait on
every further failure up to 5 min, and forgets it all once the container has run for 10 min
(its `flowcontrol.Backoff` entry expires after twice the cap). The numbers are a
`BackoffPolicy` so that tests can use fractions of a second.

Times are plain floats from one monotonic clock (`loop.time()`); nothing here reads a clock, so
the pod worker decides what "now" is and the arithmetic is tested with tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.meta import ObjectMeta
from bus.resources.pod import ContainerStateWaiting

CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
IMAGE_PULL_BACK_OFF = "ImagePullBackOff"


@dataclass(frozen=True)
class BackoffPolicy:
    """Seconds: the first delay, the most any delay may grow to, and the clean run that resets it."""

    initial: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"need 0 < initial <= cap, got initial={self.initial} cap={self.cap}")
        if self.reset_after <= 0:
            raise ValueError(f"reset_after must be positive, got {self.reset_after}")

    def next_delay(self, previous: float | None, *, ran_for: float) -> float:
        """The delay after a failure, given the delay before it (None: first failure).

        A run longer than `reset_after` starts over at `initial` (kubelet: `hasExpired`, strictly
        longer than twice the cap).
        """
        if previous is None or ran_for > self.reset_after:
            return self.initial
        return min(previous * 2, self.cap)


DEFAULT_POLICY = BackoffPolicy()


class Backoff:
    """The restart back-off of one container: the last delay and when it ends."""

    def __init__(self, policy: BackoffPolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.delay: float | None = None
        self.until = 0.0

    def delay_after(self, *, exit_at: float, started_at: float) -> float:
        """Record a failure at `exit_at` of a run begun at `started_at`; the delay before restarting."""
        self.delay = self.policy.next_delay(self.delay, ran_for=exit_at - started_at)
        self.until = exit_at + self.delay
        return self.delay

    def remaining(self, now: float) -> float:
        """Seconds still to wait before the next start (0 when it may start now)."""
        return max(0.0, self.until - now)

    def reset(self) -> None:
        self.delay = None
        self.until = 0.0

    def restore(self, delay: float | None) -> None:
        """Continue from the delay a previous agent had reached (a container label), with no
        wait pending: the next failure is counted from there."""
        self.delay = delay
        self.until = 0.0


class RestartBackoff(Backoff):
    """The restart back-off of a container, as the kubelet keeps it: the first failure (and the
    first after a clean run longer than `reset_after`) restarts at once; each further failure
    waits the delay the one before it set. With the defaults: 0, 10 s, 20 s, 40 s... 5 min.
    """

    def delay_after(self, *, exit_at: float, started_at: float) -> float:
        ran_for = exit_at - started_at
        wait = 0.0 if self.delay is None or ran_for > self.policy.reset_after else self.delay
        self.delay = self.policy.next_delay(self.delay, ran_for=ran_for)
        self.until = exit_at + wait
        return wait


class ImagePullBackoff:
    """The pull back-off of one image: ErrImagePull on a failed pull, ImagePullBackOff while waiting.

    The time since the previous failed pull plays the part of the run length: pulls that keep
    failing back off; a failure long after the last one starts over at `initial`.
    """

    def __init__(self, policy: BackoffPolicy = DEFAULT_POLICY) -> None:
        self._backoff = Backoff(policy)
        self._last_failure: float | None = None

    @property
    def delay(self) -> float | None:
        return self._backoff.delay

    def failed(self, at: float) -> float:
        """Record a failed pull at `at`; the delay before the next attempt."""
        previous = self._last_failure if self._last_failure is not None else at
        self._last_failure = at
        return self._backoff.delay_after(exit_at=at, started_at=previous)

    def succeeded(self) -> None:
        self._backoff.reset()
        self._last_failure = None

    def remaining(self, now: float) -> float:
        return self._backoff.remaining(now)


def go_duration(seconds: float) -> str:
    """Format as Go's `time.Duration.String` does (`10s`, `2m40s`, `5m0s`, `100ms`), to millisecond."""
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def crash_loop_back_off(delay: float, *, container: str, pod: ObjectMeta) -> ContainerStateWaiting:
    """The waiting state of a container held back after failing, worded as the kubelet does."""
    message = (
        f"back-off {go_duration(delay)} restarting failed container={container} "
        f"pod={pod.name}_{pod.namespace}({pod.uid})"
    )
    return ContainerStateWaiting(reason=CRASH_LOOP_BACK_OFF, message=message)


def image_pull_back_off(image: str) -> ContainerStateWaiting:
    """The waiting state of a container whose image pull is backing off."""
    return ContainerStateWaiting(reason=IMAGE_PULL_BACK_OFF, message=f'Back-off pulling image "{image}"')
