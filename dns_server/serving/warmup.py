"""Answers made ahead: what pods' stub resolvers will ask, answered before they ask.

Theory of operation.  A question the answer table has not seen costs about ten times a kept one
(the chain, the encoder, a new entry: bench/cold.py), and after a start every question is new: a
replica that has just become ready would answer its first wave of lookups at a fraction of its
speed.  So when a runtime starts on synced cluster data, when its data first becomes synced, and
when services are added, the kubernetes plugin lists the questions pods ask about them
(`Handler.stub_questions`: A, AAAA, and SRV for named ports) and they are answered here through each
listener's own path (`Pipeline.answer_ahead`), as glibc's and musl's resolvers send them (RD, no
EDNS), so that the first query of each is an exact hit.  The replies are those a query would get:
the same chain, encoder and table.  Nothing is counted or logged.

The work runs on the event loop in slices of at most `SLICE` seconds, so queries are answered in
between, and stops when answers made ahead fill half a table: asked questions keep the other half.
A started runtime is not ready (`Runtime.not_ready`) until its first warm-up is done, so a replica
takes traffic warm; a reload's runtime serves from its predecessor's sockets at once.  A changed
service is not answered ahead again: a change touches few answers, and each is answered afresh
when next asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import Callable, Iterable, Iterator

from dns_server.chain.plugin import Question
from dns_server.serving.router import Pipeline

log = logging.getLogger(__name__)

SLICE = 0.005  # seconds of answering ahead between two turns of the event loop


class Warmup:
    """The questions still to answer ahead, per pipeline, and the task that answers them."""

    def __init__(self, starting: bool, synced: Callable[[], bool]) -> None:
        self.starting = starting  # until the first warm-up on synced data is done
        self._synced = synced  # whether every cluster is synced (a warm-up before that is not the first)
        self._queue: deque[tuple[Pipeline, Iterator[Question]]] = deque()
        self._work = asyncio.Event()
        self._work.set()
        self.answered = 0
        self.on_warm: Callable[[], None] = lambda: None  # called once the start's warm-up is done

    def add(self, pipeline: Pipeline, questions: Iterable[Question]) -> None:
        """Answer `questions` ahead on `pipeline`, in turn (read as they are answered: a large cluster's
        questions are never all listed at once)."""
        self._queue.append((pipeline, iter(questions)))
        self._work.set()

    async def run(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            started, answered = perf_counter(), self.answered
            while self._queue:
                pipeline, questions = self._queue[0]
                if not self._slice(pipeline, questions):
                    self._queue.popleft()
                await asyncio.sleep(0)
            if self.answered > answered:
                log.info("answered %d questions ahead in %.1f s", self.answered - answered, perf_counter() - started)
            if self.starting and self._synced():
                self.starting = False
                self.on_warm()

    def _slice(self, pipeline: Pipeline, questions: Iterator[Question]) -> bool:
        """Answer questions for up to SLICE seconds; False once none is left or the table has no room for them."""
        deadline = perf_counter() + SLICE
        table = pipeline.table
        for question in questions:
            if not table.room_ahead():
                return False
            pipeline.answer_ahead(question)
            self.answered += 1
            if perf_counter() >= deadline:
                return True
        return False
