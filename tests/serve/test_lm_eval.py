"""Acceptance with the real client: lm-evaluation-harness (`lm-eval run`, its API models)
against a running `vtc-lab serve`, on the local task YAMLs of tests/serve/lm_eval_tasks (a JSONL
shipped there, no hub download): `local-completions` for a generate_until and a loglikelihood
task, `local-chat-completions` for the generate_until task. What lm-eval records must be what
the model gives: the loglikelihoods are recomputed here from the weights, the generations are
the server's own greedy answers to the same prompts. Slow: three lm-eval processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from tests.serve.conftest import env

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests/serve/lm_eval_tasks"


def lm_eval(out: Path, model: str, model_args: str, tasks: str, *extra: str) -> dict[str, list]:
    """Run `lm-eval run` from the repository root (the YAMLs name the JSONL relative to it);
    the per-task samples it logged."""
    e = {**env(), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
         "HF_DATASETS_CACHE": str(out / "hf-datasets")}
    proc = subprocess.run([sys.executable, "-m", "lm_eval", "run", "--model", model,
                           "--model_args", model_args, "--tasks", tasks, "--include_path", TASKS,
                           "--output_path", str(out), "--log_samples", *extra],
                          cwd=ROOT, env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        task = path.name.split("_20")[0].removeprefix("samples_")
        samples[task] = [json.loads(x) for x in path.read_text().splitlines()]
    return samples


@pytest.mark.slow
def test_lm_eval_against_vtc_lab_serve(server, ckpt, tmp_path):
    from transformers import AutoTokenizer

    from vtc_lab.models import ModelConfig, load_backbone

    completions = (f"model={ckpt.name},base_url={server.url}/completions,"
                   f"tokenizer_backend=huggingface,tokenizer={ckpt},max_length=512")
    got = lm_eval(tmp_path / "completions", "local-completions", completions,
                  "vtc_serve_gen,vtc_serve_ll")
    rows = [json.loads(x) for x in (ROOT / TASKS / "arith.jsonl").read_text().splitlines()]
    assert len(got["vtc_serve_gen"]) == len(got["vtc_serve_ll"]) == len(rows)

    # loglikelihood: lm-eval's number is log p(target | context) of the weights
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    torch.set_num_threads(1)
    model = load_backbone(ModelConfig(source="pretrained", path=str(ckpt), arch="auto")).model
    for sample in got["vtc_serve_ll"]:
        context, target = sample["arguments"]["gen_args_0"].values()
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        whole = tok(context + target, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].float(), -1)
        want = sum(float(logp[t - 1, whole[t]]) for t in range(len(ctx), len(whole)))
        greedy = all(int(logp[t - 1].argmax()) == whole[t] for t in range(len(ctx), len(whole)))
        ll, is_greedy = sample["resps"][0][0]
        assert float(ll) == pytest.approx(want, abs=1e-3)
        assert (is_greedy == "True") == greedy

    # generate_until: lm-eval's text is the server's greedy answer, cut at the stop string
    for sample in got["vtc_serve_gen"]:
        prompt = sample["arguments"]["gen_args_0"]["arg_0"]
        direct = httpx.post(server.url + "/completions", timeout=120, json={
            "prompt": tok(prompt, add_special_tokens=False)["input_ids"], "max_tokens": 8,
            "temperature": 0, "stop": ["\n"]}).json()["choices"][0]["text"]
        assert sample["resps"][0][0] == direct

    chat = lm_eval(tmp_path / "chat", "local-chat-completions",
                   f"model={ckpt.name},base_url={server.url}/chat/completions", "vtc_serve_gen",
                   "--apply_chat_template")
    assert len(chat["vtc_serve_gen"]) == len(rows)
    for sample in chat["vtc_serve_gen"]:
        messages = json.loads(sample["arguments"]["gen_args_0"]["arg_0"][0])
        direct = httpx.post(server.url + "/chat/completions", timeout=120, json={
            "messages": messages, "max_tokens": 8, "temperature": 0, "stop": ["\n"]}).json()
        assert sample["resps"][0][0] == direct["choices"][0]["message"]["content"]
