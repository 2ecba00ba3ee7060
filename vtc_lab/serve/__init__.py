"""`vtc-lab serve`: an OpenAI-compatible HTTP server over the in-process Hugging Face engine.

It lets a CPU box, or a GPU without vLLM, serve a local checkpoint to many evaluation clients
(`vtc-lab eval engine=openai`), and it is what the OpenAI engine is tested against over real
HTTP. It accepts the request shape of vLLM and SGLang (image data URLs, `continue_final_message`,
`top_k`, per-request `seed`, `return_token_ids`, `/tokenize`), so the client code exercised here
is the code that talks to them.

Layering: `serve` uses `infer` (the engine) and `models` (loading); only `cli` imports it, so it
sits beside `train`, between `infer` and `cli`. `ServeConfig` is torch-free; the app and the
batcher load on first use.
"""

from vtc_lab.serve.config import ServeConfig

__all__ = ["ServeConfig"]
