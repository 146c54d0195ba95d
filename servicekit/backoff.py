"""Jittered, capped exponential backoff: the one place retry delays are computed."""

import random


class Backoff:
    def __init__(self, initial_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**attempt)], at least initial/2."""
        ceiling = min(self.max_s, self.initial_s * (2 ** self._attempt))
        if ceiling < self.max_s:  # stop counting once capped: 2**attempt would overflow a float
            self._attempt += 1
        return max(self.initial_s / 2, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self._attempt = 0
