"""A deterministic scripted engine: a test double for the model (not for the loop's results).

Each problem has a script: the text it "generates" in round 1, 2, ... (the last entry repeats).
It implements the `Engine` protocol and records every request it saw, so tests can assert what
the loop fed the model (images, prefixes, batch sizes) and what the loop made of the answers.
Token ids are one id per whitespace-separated word (id = word length), so counts are exact.
"""

from __future__ import annotations

from vtc_lab.infer.engine import GenerationOutput, GenerationParams, GenerationRequest

EOS = 0
VISION_PER_IMAGE = 7


def question_of(request: GenerationRequest) -> str:
    user = request.messages[-1]
    return next(p["text"] for p in user["content"] if p["type"] == "text")


def images_of(request: GenerationRequest) -> list:
    return [p["image"] for m in request.messages for p in m["content"] if p["type"] == "image"]


class ScriptedEngine:
    def __init__(self, scripts: dict[str, list[str]], budget_words: int | None = None):
        self.scripts = scripts
        self.budget_words = budget_words
        self.calls: list[list[GenerationRequest]] = []
        self.seen: dict[str, int] = {}

    def generate(self, requests, params: GenerationParams):
        self.calls.append(list(requests))
        outs = []
        for req in requests:
            q = question_of(req)
            n = self.seen.get(q, 0)  # rounds of this problem so far (one sample per problem)
            self.seen[q] = n + 1
            script = self.scripts[q]
            text = script[min(n, len(script) - 1)]
            words = text.split()
            stopped = self.budget_words is None or len(words) <= self.budget_words
            if not stopped:
                words = words[: self.budget_words]
                text = " ".join(words)
            ids = [len(w) for w in words] + ([EOS] if stopped else [])
            vision = VISION_PER_IMAGE * len(images_of(req))
            outs.append(GenerationOutput(
                text=text, token_ids=ids,
                context_text_tokens=len(q.split()) + len(req.prefix_ids), context_vision_tokens=vision,
                stopped=stopped, generate_s=0.01))
        return outs

    def count_text_tokens(self, text: str) -> int:
        return len(text.split())

    def kv_bytes_per_token(self) -> int:
        return 100
