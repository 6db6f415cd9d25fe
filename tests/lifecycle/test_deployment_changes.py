"""DeploymentChanges: a deployment's event stream is woken by a change made in another thread,
never misses one made between its read and its wait, and otherwise waits for its poll interval."""

from __future__ import annotations

import asyncio
import threading

from lifecycle.deployment_changes import DeploymentChanges

LONG = 60.0  # a poll interval no test waits out: returning means the change woke the waiter


def test_a_change_from_another_thread_wakes_the_waiter() -> None:
    changes = DeploymentChanges()

    async def scenario() -> bool:
        seen = changes.version("d1")
        waiting = asyncio.create_task(changes.wait("d1", seen, LONG))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        threading.Thread(target=changes.changed, args=("d1",)).start()
        await asyncio.wait_for(waiting, 10)
        return changes.version("d1") == seen + 1

    assert asyncio.run(scenario())


def test_a_change_before_the_wait_is_not_missed_and_others_do_not_wake_it() -> None:
    changes = DeploymentChanges()

    async def scenario() -> None:
        seen = changes.version("d1")
        changes.changed("d1")  # between the stream's read and its wait
        await asyncio.wait_for(changes.wait("d1", seen, LONG), 10)
        seen = changes.version("d1")
        waiting = asyncio.create_task(changes.wait("d1", seen, LONG))
        changes.changed("d2")
        await asyncio.sleep(0.05)
        assert not waiting.done()  # another deployment's change
        changes.changed("d1", finished=True)
        await asyncio.wait_for(waiting, 10)
        assert changes.version("d1") == 0  # a finished deployment's counter is gone

    asyncio.run(scenario())


def test_without_a_change_the_wait_ends_at_its_timeout() -> None:
    changes = DeploymentChanges()

    async def scenario() -> None:
        await asyncio.wait_for(changes.wait("d1", 0, 0.05), 10)

    asyncio.run(scenario())
