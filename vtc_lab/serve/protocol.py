"""The OpenAI protocol of `vtc-lab serve` as pydantic models: every request is validated here,
before any work, and a malformed one is a 400 naming the field.

Field names and shapes follow the OpenAI API reference and vLLM's protocol classes
(vllm/entrypoints/openai/protocol.py), including vLLM's extra parameters (`top_k`,
`repetition_penalty`, `continue_final_message`, `add_generation_prompt`, `return_token_ids`,
`add_special_tokens`) that vtc-lab's own client sends. Numbers are strict (a string
`temperature` is an error, not coerced), finite, and in range; fields the server cannot honour
are refused with a message saying so, never silently ignored. Unknown fields are ignored, as the
OpenAI servers do (clients send `user`, `metadata`...).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, \
    ValidationError, model_validator

SEED_MAX = 2**63 - 1
"""Seeds are 64-bit signed integers (torch.Generator.manual_seed; vLLM's range)."""

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class RequestError(ValueError):
    """A request the server refuses: HTTP `status`, OpenAI error body naming `param`."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError",
                 param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


def error_body(message: str, status: int, kind: str, param: str | None = None) -> dict:
    """The OpenAI error object (what the openai SDK parses into its exception message)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def from_validation_error(err: ValidationError) -> RequestError:
    """The most specific problem of a pydantic error as one line naming the field. Of a union's
    alternatives (a prompt is a string or token ids...) the one that got furthest is reported,
    without pydantic's type tags in the path."""
    errors = err.errors()
    first = max(errors, key=lambda e: len(e["loc"]))
    where = ".".join(str(p) for p in first["loc"] if not _TYPE_TAG.fullmatch(str(p))) or "body"
    message = first["msg"].removeprefix("Value error, ")
    return RequestError(f"{where}: {message}" if where != "body" else message, param=where)


_TYPE_TAG = re.compile(r"(str|int|bool|float|list\[.*\]|dict\[.*\]|constrained-\w+|"
                       r"tagged-union\[.*\]|function-\w+\[.*\])")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ImageURL(_Strict):
    url: StrictStr
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[ContentPart]
    name: StrictStr | None = None


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class SamplingFields(_Strict):
    """What chat and completion requests share."""

    model: StrictStr | None = None
    temperature: Annotated[Finite, Field(ge=0, le=100)] | None = None
    top_p: Annotated[Finite, Field(gt=0, le=1)] | None = None
    top_k: Annotated[StrictInt, Field(ge=-1)] | None = None
    min_p: Annotated[Finite, Field(ge=0, le=0)] | None = None
    repetition_penalty: Annotated[Finite, Field(gt=0, le=100)] | None = None
    presence_penalty: Annotated[Finite, Field(ge=0, le=0)] | None = None
    frequency_penalty: Annotated[Finite, Field(ge=0, le=0)] | None = None
    seed: Annotated[StrictInt, Field(ge=-SEED_MAX - 1, le=SEED_MAX)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=16)] = 1
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=16)] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    return_token_ids: StrictBool = False
    # refused when set to anything but "off" (the engine cannot honour them)
    logit_bias: dict[str, Any] | None = None
    stop_token_ids: list[StrictInt] | None = None
    best_of: Annotated[StrictInt, Field(ge=1, le=1)] | None = None
    use_beam_search: Literal[False] | None = None
    ignore_eos: Literal[False] | None = None
    min_tokens: Annotated[StrictInt, Field(ge=0, le=0)] | None = None
    skip_special_tokens: Literal[True] | None = None
    tools: Annotated[list[Any], Field(max_length=0)] | None = None

    @model_validator(mode="after")
    def _refused(self):
        if self.logit_bias:
            raise ValueError("logit_bias is not supported by vtc-lab serve")
        if self.stop_token_ids:
            raise ValueError("stop_token_ids is not supported by vtc-lab serve")
        if isinstance(self.stop, str) and not self.stop or \
                isinstance(self.stop, list) and any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")
        return self

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


MaxTokens = Annotated[StrictInt, Field(ge=0)]


class ChatRequest(SamplingFields):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    logprobs: StrictBool = False
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    add_generation_prompt: StrictBool | None = None
    continue_final_message: StrictBool = False
    return_prompt_token_ids: StrictBool = False

    @model_validator(mode="after")
    def _chat(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        if self.continue_final_message and self.add_generation_prompt is True:
            raise ValueError("continue_final_message and add_generation_prompt cannot both be "
                             "true")
        if self.add_generation_prompt is False and not self.continue_final_message:
            raise ValueError("add_generation_prompt=false is only supported together with "
                             "continue_final_message=true")
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs a final assistant message")
        return self

    def max_new_tokens(self, default: int) -> int:
        value = self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens
        if value == 0:
            raise RequestError("max_tokens must be >= 1 for chat completions",
                               param="max_tokens")
        return default if value is None else value


TokenIds = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1)]
Prompt = Union[StrictStr, Annotated[list[StrictStr], Field(min_length=1, max_length=64)],
               TokenIds, Annotated[list[TokenIds], Field(min_length=1, max_length=64)]]


class CompletionRequest(SamplingFields):
    prompt: Prompt
    max_tokens: MaxTokens = 16
    """The OpenAI API's default for completions."""
    logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    echo: StrictBool = False
    add_special_tokens: StrictBool = True
    suffix: Annotated[StrictStr, Field(max_length=0)] | None = None

    @model_validator(mode="after")
    def _completion(self):
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens=0 needs echo=true (prompt logprobs only)")
        if self.stream and self.echo:
            raise ValueError("echo is not supported with stream=true")
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: a string or a token-id list."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if isinstance(p[0], int):
            return [list(p)]
        return list(p)


class TokenizeRequest(_Strict):
    model: StrictStr | None = None
    prompt: StrictStr | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None
    add_special_tokens: StrictBool = True
    add_generation_prompt: StrictBool | None = None
    continue_final_message: StrictBool = False

    @model_validator(mode="after")
    def _one(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("/tokenize needs exactly one of `prompt` (a string) or `messages`")
        if self.messages is not None and (self.continue_final_message
                                          or self.add_generation_prompt is False):
            raise ValueError("/tokenize supports messages with add_generation_prompt=true")
        return self


class DetokenizeRequest(_Strict):
    model: StrictStr | None = None
    tokens: list[Annotated[StrictInt, Field(ge=0)]]


def parse(model: type[BaseModel], raw: bytes) -> Any:
    """`raw` JSON validated as `model`; RequestError (400, naming the field) otherwise."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise RequestError("request body is not valid JSON") from None
        raise from_validation_error(err) from None
