"""What an OpenAI-compatible server answered, checked and classified for `OpenAIEngine`.

A 2xx answer must be the JSON object asked for (`checked_answer`): an HTML page from a proxy or
JSON without `choices` becomes a `BadAnswerError` that says what came back, retried like a
transient failure. A refusal of a prompt past the model's context length is recognised in the
servers' own words (`is_context_overflow`) so the loop can end that sample and go on. Error
text is cut to one line (`error_message`), as the CLI prints it.
"""

from __future__ import annotations

import json
import re
from typing import Any


def is_transient(err: Exception) -> bool:
    """Worth retrying on another server: no connection, a timeout, HTTP 408/409/429/5xx, or a
    2xx that is not the response asked for."""
    import openai

    if isinstance(err, (openai.APIConnectionError, openai.APITimeoutError, BadAnswerError)):
        return True  # APITimeoutError is a subclass, listed for the reader
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


class BadAnswerError(RuntimeError):
    """A server answered 2xx with something that is not the OpenAI response asked for (an HTML
    page from a proxy, JSON without `choices`...). Retried like a transient failure: a load
    balancer may have sent the request to the wrong backend."""


class ContextOverflowError(RuntimeError):
    """The server refused a request because its prompt (plus the token budget) is past the
    model's context length. Not retried (the same request fails the same way); the loop ends
    that sample as `context_overflow`."""


# How servers word a context-length refusal (HTTP 400), matched case-insensitively:
# vLLM's OpenAI server ("This model's maximum context length is N tokens. However, you
# requested ..."), vLLM's engine check ("The decoder prompt (length N) is longer than the
# maximum model length of M"), SGLang's tokenizer manager ("The input (N tokens) is longer than
# the model's context length (M tokens)", "Requested token count exceeds the model's maximum
# context length of M tokens"), OpenAI (code `context_length_exceeded`, "maximum context
# length"), and "Input length N exceeds the maximum allowed length".
_OVERFLOW = re.compile(r"maximum context length|longer than the (?:model's context length|"
                       r"maximum model length)|context_length_exceeded|exceeds the maximum "
                       r"allowed (?:input )?length", re.IGNORECASE)


def is_context_overflow(err: Exception) -> bool:
    """True for a server's refusal of a prompt past the model's context length."""
    import openai

    if not isinstance(err, openai.APIStatusError) or err.status_code not in (400, 413, 422):
        return False
    body = getattr(err, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    return code == "context_length_exceeded" or bool(_OVERFLOW.search(error_message(err)))


def checked_answer(raw: Any, path: str, key: str) -> dict:
    """The JSON object of a raw 2xx response, which must hold a non-empty `key`; anything else
    (another content type, unparsable JSON) raises `BadAnswerError` saying what came back."""
    ctype = raw.headers.get("content-type", "")
    if "json" not in ctype.lower():
        ctype = ctype or "(no content type)"
        raise BadAnswerError(f"{path} answered HTTP {raw.status_code} {ctype}, not JSON: "
                             f"{_snippet(raw.text)}")
    try:
        body = json.loads(raw.text)
    except ValueError:
        raise BadAnswerError(f"{path} answered HTTP {raw.status_code} with unparsable JSON: "
                             f"{_snippet(raw.text)}") from None
    return checked_json(body, path, key)


def checked_json(body: Any, path: str, key: str) -> dict:
    if not isinstance(body, dict) or not body.get(key):
        raise BadAnswerError(f"{path} answered without `{key}`: {_snippet(body)}")
    if key == "choices" and not (isinstance(body[key], list) and isinstance(body[key][0], dict)):
        raise BadAnswerError(f"{path} answered a malformed `choices`: {_snippet(body)}")
    return body


def _snippet(value: Any, limit: int = 160) -> str:
    """One line of at most `limit` characters of what a server sent."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def error_message(err: Exception) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else None
        if msg:
            return _one_line(f"HTTP {getattr(err, 'status_code', '?')}: {msg}")
    if isinstance(err, BadAnswerError):
        return str(err)
    return _one_line(f"{type(err).__name__}: {err}")


def _one_line(text: str, limit: int = 400) -> str:
    """A server's message on one line (an HTML error page has hundreds), capped."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def error_cause(err: Exception) -> str:
    cause = err.__cause__ or err.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(err)
