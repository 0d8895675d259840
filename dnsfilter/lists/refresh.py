"""Keeping URL lists fresh: download each one every `refresh` seconds, off the event loop.

Blocky's rule: a refresh builds the new list aside and it is swapped in only when it is good.
Here the download is checked and cached by ListSource.fetch in a worker thread; when any
list actually changed (a 304 or an identical body is no change), `on_change` -- the
service's reload -- reads the lists again and swaps them in. Lists due together are fetched
one after the other and reloaded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from dnsfilter.lists.sources import DownloadError, ListSource

log = logging.getLogger(__name__)

#: First retry after a failed download, in seconds; it doubles up to the refresh interval.
RETRY_AFTER = 60.0
# The longest sleep: a reload may have added a list whose first download is due at once.
_MAX_SLEEP = 60.0

Sources = Sequence[ListSource] | Callable[[], Sequence[ListSource]]


class ListRefresher:
    """Re-downloads URL sources when due and awaits on_change when one of them changed.

    sources may be a callable, read again before every round, so lists that a reload adds
    or removes are followed without restarting the refresher. File sources are ignored.
    """

    def __init__(
        self,
        sources: Sources,
        on_change: Callable[[], Awaitable[object]],
        *,
        retry_after: float = RETRY_AFTER,
        max_sleep: float = _MAX_SLEEP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sources = sources
        self.on_change = on_change
        self.retry_after = retry_after
        self.max_sleep = max_sleep
        self.clock = clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, retry at)
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  #: download rounds run, for tests and logs

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="list-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def sources(self) -> list[ListSource]:
        current = self._sources() if callable(self._sources) else self._sources
        return [source for source in current if source.is_url]

    def due_at(self, source: ListSource) -> float:
        failed = self._failures.get(_key(source))
        return failed[1] if failed is not None else source.next_due()

    async def run(self) -> None:
        while True:
            await self.run_once()
            sources = self.sources()
            now = self.clock()
            wake = min((self.due_at(s) for s in sources), default=now + self.max_sleep)
            await asyncio.sleep(min(max(wake - now, 0.0), self.max_sleep))

    async def run_once(self) -> bool:
        """Download every due source; await on_change once if any changed. True if so."""
        now = self.clock()
        changed = []
        for source in self.sources():
            if self.due_at(source) > now:
                continue
            try:
                fresh = await asyncio.to_thread(source.fetch)
            except DownloadError as exc:
                count = self._failures.get(_key(source), (0, 0.0))[0] + 1
                delay = min(self.retry_after * 2 ** (count - 1), float(source.refresh))
                self._failures[_key(source)] = (count, self.clock() + delay)
                log.warning(
                    "list %s: %s: refresh failed (%s); keeping the last good copy, "
                    "next try in %.0fs",
                    source.name,
                    source.location,
                    exc,
                    delay,
                )
                continue
            self._failures.pop(_key(source), None)
            if fresh is not None:
                changed.append(source.name)
        self.rounds += 1
        if not changed:
            return False
        log.info("lists changed: %s; reloading", ", ".join(changed))
        try:
            await self.on_change()
        except Exception:
            # The refresher must outlive a failing reload: the next change tries again.
            log.exception("reload after a list refresh failed")
        return True


def _key(source: ListSource) -> tuple[str, str]:
    return (source.name, source.location)
