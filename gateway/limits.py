"""Send-rate limiting: a token bucket per connection."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; one token per message."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def level(self) -> float:
        """Tokens available now."""
        now = self._clock()
        return min(self.burst, self._tokens + (now - self._stamp) * self.rate)

    def take(self) -> bool:
        """Spend one token if there is one; False means the caller is over its rate."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0 - 1e-9:  # float dust must not refuse an on-time sender
            self._tokens -= 1.0
            return True
        return False
