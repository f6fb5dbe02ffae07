"""Progress reporting without a hard dependency: tqdm when installed, else plain stderr lines."""

from __future__ import annotations

import sys
import time


class Progress:
    """Count work done towards ``total``; a no-op when ``enabled`` is False."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._bar = None
        self._last = 0.0
        self.enabled = enabled and total > 0
        if not self.enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, desc=desc, unit="text", file=sys.stderr, leave=False)

    def update(self, n: int) -> None:
        """Record ``n`` more items done."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last > 2.0 or self.done >= self.total:
            self._last = now
            print(f"{self.desc}: {self.done}/{self.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
