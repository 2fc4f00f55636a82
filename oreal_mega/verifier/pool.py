"""Judge batches in worker processes with a hard per-item timeout: a stuck worker is killed and replaced.

Workers are started with 'spawn' (never fork), so the pool is safe in a trainer that also runs torch, CUDA or
vLLM threads. No signals are used: the parent watches the clock and kills the worker process itself.
"""
import multiprocessing
import resource
import time
from collections import deque
from multiprocessing.connection import wait

from dataclasses import replace

from oreal_mega.distributed import as_helper_process
from oreal_mega.verifier.extract import final_answer
from oreal_mega.verifier.judge import JudgeConfig, ModelJudge
from oreal_mega.verifier.verdict import Verdict, verify

STARTUP_TIMEOUT_S = 120.0  # a fresh worker must import sympy and report ready within this
MAX_FAILED_STARTS = 3  # consecutive workers dying before ready: a broken environment, not a bad input


JUDGED_STATUSES = ("wrong", "no_answer")  # the only rule verdicts the model judge may overturn


def _worker_main(connection, memory_limit_mb: int | None, verify_fn) -> None:
    """Worker loop: receive chunks of (index, response, gold, finished), send back (index, Verdict) one by one."""
    as_helper_process()  # dies with its parent; a trainer's stop signals are not for it
    if memory_limit_mb:
        limit = memory_limit_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    connection.send("ready")
    while True:
        try:
            chunk = connection.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, response, gold, finished in chunk:
            try:
                verdict = verify_fn(response, gold, finished=finished)
            except Exception as err:  # a verifier bug must not look like a wrong answer: keep the message
                verdict = Verdict(False, "error", None, f"{type(err).__name__}: {err}")
            connection.send((index, verdict))


class _Worker:
    """Parent-side handle of one worker process and the items it is working on, oldest first."""

    def __init__(self, context, memory_limit_mb: int | None, verify_fn):
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_end, memory_limit_mb, verify_fn),
                                       daemon=True)
        self.process.start()
        # multiprocessing's exit handler sends daemon children SIGTERM (`_popen.terminate()`) and joins them, but
        # the worker ignores SIGTERM (distributed.as_helper_process): a run ending in an error would hang there
        self.process._popen.terminate = self.process._popen.kill
        child_end.close()
        self.spawned_at = time.monotonic()
        self.ready = False
        self.in_flight: deque[int] = deque()
        self.head_started = 0.0  # when the oldest in-flight item started (its deadline counts from here)

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class VerifierPool:
    """`verify_batch` over `num_workers` processes; an item taking more than `timeout_s` becomes `timeout`.

    Counters for the trainer's metrics: `timeouts`, `errors`, `worker_restarts`, `verdicts` (see `counters()`).
    `verify_fn` is the per-item function run in the workers (a module-level function, so that spawn can pickle
    it); it takes (response, gold, *, finished) and returns a Verdict.

    `judge` (a JudgeConfig, optional) adds the model judge: after the rules, every `wrong`/`no_answer` verdict is
    sent to the endpoint (checked at construction) and becomes `correct` (source "judge") when the judge says so;
    failures and timeouts leave it wrong. Its counters: `judge_calls`, `judge_correct`, `judge_wrong`,
    `judge_failures`, `judge_timeouts`.
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 5.0, *, judge: JudgeConfig | None = None,
                 chunk_size: int = 8, memory_limit_mb: int | None = 4096, start_method: str = "spawn",
                 verify_fn=verify):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if start_method == "fork":
            raise ValueError("start_method 'fork' is unsafe next to torch/vLLM threads: use 'spawn' or 'forkserver'")
        self.timeout_s = timeout_s
        self.chunk_size = max(1, chunk_size)
        self.memory_limit_mb = memory_limit_mb
        self._model_judge = ModelJudge(judge) if judge is not None else None
        if self._model_judge is not None:
            self._model_judge.check_available()
        self.judge_counts = dict.fromkeys(("calls", "correct", "wrong", "failures", "timeouts"), 0)
        self._verify_fn = verify_fn
        self._context = multiprocessing.get_context(start_method)
        self._workers = [_Worker(self._context, memory_limit_mb, verify_fn) for _ in range(num_workers)]
        self.timeouts = 0
        self.errors = 0
        self.worker_restarts = 0
        self.verdicts = 0
        self._failed_starts = 0

    @property
    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def counters(self) -> dict[str, int]:
        counts = {"verdicts": self.verdicts, "timeouts": self.timeouts, "errors": self.errors,
                  "worker_restarts": self.worker_restarts}
        if self._model_judge is not None:
            counts.update({f"judge_{name}": value for name, value in self.judge_counts.items()})
        return counts

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.connection.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.kill()
        self._workers = []

    def verify_batch(self, responses, golds, finished=None, questions=None) -> list[Verdict]:
        """Verdicts in input order. `finished[i]` False marks a response cut at the length limit; `questions`
        (optional) are shown to the model judge."""
        responses, golds = list(responses), list(golds)
        finished = [True] * len(responses) if finished is None else [bool(f) for f in finished]
        questions = [""] * len(responses) if questions is None else [str(q) for q in questions]
        if not len(responses) == len(golds) == len(finished) == len(questions):
            raise ValueError(f"batch lengths differ: {len(responses)} responses, {len(golds)} golds, "
                             f"{len(finished)} finished flags, {len(questions)} questions")
        for index, (response, gold) in enumerate(zip(responses, golds)):
            if not isinstance(response, str) or not isinstance(gold, str):
                raise TypeError(f"item {index}: response and gold must be str")
        if not self._workers:
            raise RuntimeError("VerifierPool is closed")
        for position, worker in enumerate(self._workers):
            if not worker.process.is_alive():  # died while idle (killed from outside): nothing to blame
                self._restart(position, f"exit code {worker.process.exitcode}")
        items = list(zip(responses, golds, finished))
        results: list[Verdict | None] = [None] * len(items)
        pending = deque(range(len(items)))
        while pending or any(worker.in_flight for worker in self._workers):
            self._dispatch(pending, items)
            self._collect(results, pending, items)
        if self._model_judge is not None:
            self._consult_judge(results, items, questions)
        self.verdicts += len(items)
        return results

    def _consult_judge(self, results: list, items: list, questions: list) -> None:
        """Ask the model judge about every rule-rejected verdict; only its `correct` changes the verdict."""
        asked = [index for index, verdict in enumerate(results) if verdict.status in JUDGED_STATUSES]
        judgments = self._model_judge.judge_many([(questions[i], items[i][1], items[i][0]) for i in asked])
        for index, judgment in zip(asked, judgments):
            self.judge_counts["calls"] += 1
            self.judge_counts[{"correct": "correct", "wrong": "wrong", "failure": "failures",
                               "timeout": "timeouts"}[judgment.outcome]] += 1
            if judgment.outcome == "correct":
                results[index] = replace(results[index], correct=True, status="correct", source="judge")
            elif judgment.message:
                results[index] = replace(results[index], message=f"judge {judgment.outcome}: {judgment.message}")

    def _dispatch(self, pending: deque, items: list) -> None:
        for worker in self._workers:
            if worker.ready and not worker.in_flight and pending:
                chunk = [pending.popleft() for _ in range(min(self.chunk_size, len(pending)))]
                worker.in_flight.extend(chunk)
                worker.head_started = time.monotonic()
                try:
                    worker.connection.send([(index, *items[index]) for index in chunk])
                except OSError:
                    pass  # the worker died; _collect sees the closed pipe and handles it

    def _collect(self, results: list, pending: deque, items: list) -> None:
        now = time.monotonic()
        busy = [worker.head_started + self.timeout_s for worker in self._workers if worker.in_flight]
        wait(
            [worker.connection for worker in self._workers],
            timeout=max(0.0, min(busy) - now) if busy else 1.0,
        )
        for position, worker in enumerate(self._workers):
            try:
                while worker.connection.poll():
                    self._receive(worker, worker.connection.recv(), results)
            except (EOFError, OSError):
                worker.process.join(timeout=5)  # reap it, so that the exit code (e.g. -9) is known
                self._replace(position, pending, results, items, status="error",
                              message=f"worker process died (exit code {worker.process.exitcode})")
                continue
            now = time.monotonic()
            if worker.in_flight and now - worker.head_started > self.timeout_s:
                self._replace(position, pending, results, items, status="timeout",
                              message=f"verification exceeded {self.timeout_s:g} s; worker killed")
            elif not worker.ready and now - worker.spawned_at > STARTUP_TIMEOUT_S:
                raise RuntimeError(f"verifier worker did not start within {STARTUP_TIMEOUT_S:g} s")

    def _receive(self, worker: _Worker, message, results: list) -> None:
        if message == "ready":
            worker.ready = True
            self._failed_starts = 0
            return
        index, verdict = message
        worker.in_flight.popleft()
        worker.head_started = time.monotonic()
        results[index] = verdict
        if verdict.status == "error":
            self.errors += 1

    def _restart(self, position: int, reason: str) -> _Worker:
        """Kill worker `position` and start a fresh one in its place; returns the old handle."""
        worker = self._workers[position]
        worker.kill()
        if not worker.ready:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise RuntimeError(f"{MAX_FAILED_STARTS} verifier workers in a row died before start-up: {reason}")
        self._workers[position] = _Worker(self._context, self.memory_limit_mb, self._verify_fn)
        self.worker_restarts += 1
        return worker

    def _replace(self, position: int, pending: deque, results: list, items: list, *, status: str,
                 message: str) -> None:
        """Restart the worker, fail its current item with `status`, requeue the rest of its chunk."""
        worker = self._restart(position, message)
        if worker.in_flight:
            index = worker.in_flight.popleft()
            results[index] = Verdict(False, status, final_answer(items[index][0]), message)
            if status == "timeout":
                self.timeouts += 1
            else:
                self.errors += 1
            pending.extendleft(reversed(worker.in_flight))
