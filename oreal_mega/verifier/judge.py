"""Optional model judge: ask an LLM behind an OpenAI-compatible endpoint whether a rule-rejected answer matches.

As in the reference (`math_judger.py`), the judge only sees responses the rules call `wrong` or `no_answer`; it can
turn them into `correct`, never the reverse. It reads the question, the gold and the response's final region, and
must reply with the letter A (equivalent) or B (not equivalent). A reply with neither or both letters, an HTTP or
connection error, or no reply within `timeout_s` counts as a failure / timeout and leaves the verdict wrong.

Standard library only (http.client): every request has a hard wall-clock deadline, also against a server that
accepts the connection and then trickles or never answers.
"""
import http.client
import json
import re
import socket
import string
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from oreal_mega.errors import UserError
from oreal_mega.verifier.extract import final_region

MAX_RESPONSE_CHARS = 2_000  # the judge reads the end of the final region (where the answer is)
TEMPLATE_FIELDS = {"question", "gold", "response"}
DEFAULT_PROMPT_TEMPLATE = (
    "You check a student's answer to a math problem against the reference answer.\n\n"
    "Problem:\n{question}\n\n"
    "Reference answer:\n{gold}\n\n"
    "End of the student's response:\n{response}\n\n"
    "Does the student's final answer mean the same as the reference answer? Differences of notation, formatting "
    "or order (where order does not matter) do not count; a different value, a missing part or several different "
    "answers do. Reply with one letter: A if the final answer matches the reference, B if it does not."
)
_VERDICT_LETTER = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")

STARTUP_TIMEOUT_S = 10.0  # the start-up listing's wall-clock limit when timeout_s is shorter


@dataclass
class JudgeConfig:
    url: str  # OpenAI-compatible base URL, e.g. http://judge-host:8000/v1 (POST {url}/chat/completions)
    model: str  # the model name the server serves
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE  # fields {question} {gold} {response}; literal braces doubled
    timeout_s: float = 30.0  # wall-clock limit per request; a request past it counts as a timeout (wrong)
    concurrency: int = 8  # requests in flight at once
    max_tokens: int = 100  # the reply only needs the letter; the reference allows 100 tokens

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"verifier.judge.url must be an http(s) URL such as http://host:8000/v1, got {self.url!r}")
        if not self.model:
            raise UserError("verifier.judge.model must name the served model, got ''")
        if not self.timeout_s > 0:
            raise UserError(f"verifier.judge.timeout_s must be > 0, got {self.timeout_s}")
        if self.concurrency < 1:
            raise UserError(f"verifier.judge.concurrency must be >= 1, got {self.concurrency}")
        if self.max_tokens < 1:
            raise UserError(f"verifier.judge.max_tokens must be >= 1, got {self.max_tokens}")
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(self.prompt_template) if name is not None}
        except ValueError as err:
            raise UserError(f"verifier.judge.prompt_template is not a valid template: {err}") from None
        unknown = fields - TEMPLATE_FIELDS
        if unknown or not {"gold", "response"} <= fields:
            raise UserError(f"verifier.judge.prompt_template must use {{gold}} and {{response}} (and may use "
                            f"{{question}}), got fields {sorted(fields)}")


class JudgeTimeout(Exception):
    pass


class JudgeFailure(Exception):
    pass


@dataclass(frozen=True)
class Judgment:
    outcome: str  # "correct", "wrong", "failure", "timeout"
    message: str = ""


class ModelJudge:
    """Client of one judge endpoint; `judge_many` runs up to `concurrency` requests at once."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base_path = parts.path.rstrip("/")

    def check_available(self) -> None:
        """Fail fast (as the reference does at start-up) when the endpoint is down or does not serve the model."""
        # at least STARTUP_TIMEOUT_S: a timeout tuned for short judgments must not fail a busy server's listing
        deadline = time.monotonic() + max(self.config.timeout_s, STARTUP_TIMEOUT_S)
        try:
            listing = self._request("GET", "/models", None, deadline)
            served = [entry.get("id") for entry in listing.get("data", [])]
        except (JudgeFailure, JudgeTimeout, AttributeError, TypeError) as err:  # AttributeError: not a listing
            raise UserError(f"verifier.judge: cannot list models at {self.config.url}/models: {err}") from None
        if self.config.model not in served:
            raise UserError(f"verifier.judge.model {self.config.model!r} is not served at {self.config.url} "
                            f"(served: {', '.join(map(str, served)) or 'none'})")

    def prompt(self, question: str, gold: str, response: str) -> str:
        return self.config.prompt_template.format(
            question=question, gold=gold, response=final_region(response)[-MAX_RESPONSE_CHARS:].strip())

    def judge_one(self, question: str, gold: str, response: str) -> Judgment:
        body = {"model": self.config.model, "temperature": 0.0, "max_tokens": self.config.max_tokens,
                "messages": [{"role": "user", "content": self.prompt(question, gold, response)}]}
        deadline = time.monotonic() + self.config.timeout_s
        try:
            reply = self._request("POST", "/chat/completions", body, deadline)
            text = reply["choices"][0]["message"]["content"] or ""
        except JudgeTimeout as err:
            return Judgment("timeout", str(err))
        except (JudgeFailure, KeyError, IndexError, TypeError) as err:
            return Judgment("failure", f"{type(err).__name__}: {err}")
        letters = set(_VERDICT_LETTER.findall(text))
        if letters == {"A"}:
            return Judgment("correct")
        if letters == {"B"}:
            return Judgment("wrong")
        return Judgment("failure", f"reply has no single verdict letter: {text[:80]!r}")

    def judge_many(self, items: list[tuple[str, str, str]]) -> list[Judgment]:
        """Judgments for (question, gold, response) items, in order; each bounded by `timeout_s` once started."""
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(items))) as executor:
            return list(executor.map(lambda item: self.judge_one(*item), items))

    def _request(self, method: str, path: str, body, deadline: float):
        """JSON request with a hard deadline: every socket operation gets only the time that is left."""
        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise JudgeTimeout(f"no reply within {self.config.timeout_s:g} s")
            return left

        connection_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=remaining())
        try:
            payload = None if body is None else json.dumps(body).encode("utf-8")
            connection.request(method, self._base_path + path, body=payload,
                               headers={"Content-Type": "application/json"})
            sock = connection.sock  # kept: getresponse() drops the connection's reference on `Connection: close`
            sock.settimeout(remaining())
            response = connection.getresponse()
            chunks = []
            while True:
                sock.settimeout(remaining())
                chunk = response.read1(65_536)
                if not chunk:
                    break
                chunks.append(chunk)
            remaining()
            if response.status != 200:
                raise JudgeFailure(f"HTTP {response.status}: {b''.join(chunks)[:200]!r}")
            return json.loads(b"".join(chunks))
        except socket.timeout:
            raise JudgeTimeout(f"no reply within {self.config.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise JudgeFailure(f"{type(err).__name__}: {err}") from None
        finally:
            connection.close()
