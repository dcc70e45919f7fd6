"""The agent loop a Python user would write instead of k2: llama-server + the `openai` client.

`k2 bench` runs it against llama-server on 127.0.0.1 with the same task as its own agent:
the same system text (tools declared in it, as k2 folds them for templates without tool
support), the same grammar for the calls (llama-server's `grammar` field: without it a small
model writes no calls at all), greedy sampling, the same tool outputs and token limits, prompt
caching on. Only the loop is timed, not the interpreter's start or the imports.

Usage: peer_agent.py SPEC.json  (prints one JSON object: wall time, usage, messages)
"""

import json
import re
import sys
import time

import openai
from openai import OpenAI

CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    client = OpenAI(base_url=spec["base_url"], api_key="none", max_retries=0)
    messages = [
        {"role": "system", "content": spec["system"]},
        {"role": "user", "content": spec["task"]},
    ]
    usage = {
        "prompt_tokens": 0,
        "cached_tokens": 0,
        "completion_tokens": 0,
        # llama-server's own timings, to tell the server's time from the loop's.
        "server_ms": 0.0,
    }
    per_step = []
    started = time.perf_counter()
    steps = 0
    while True:
        tools_on = steps < spec["tool_steps"]
        extra = {"cache_prompt": True}
        if tools_on:
            extra["grammar"] = spec["grammar"]
        reply = client.chat.completions.create(
            model=spec["model"],
            messages=messages,
            temperature=0,
            max_tokens=spec["step_tokens"] if tools_on else spec["answer_tokens"],
            extra_body=extra,
        )
        steps += 1
        u = reply.usage
        usage["prompt_tokens"] += u.prompt_tokens
        usage["completion_tokens"] += u.completion_tokens
        details = getattr(u, "prompt_tokens_details", None)
        usage["cached_tokens"] += (getattr(details, "cached_tokens", 0) or 0) if details else 0
        timings = (reply.model_extra or {}).get("timings") or {}
        per_step.append(
            {
                "finish_reason": reply.choices[0].finish_reason,
                "usage": u.model_dump(),
                "timings": timings,
            }
        )
        usage["server_ms"] += timings.get("prompt_ms", 0.0) + timings.get("predicted_ms", 0.0)
        text = reply.choices[0].message.content or ""
        calls = []
        for block in CALL.findall(text) if tools_on else []:
            try:
                calls.append(json.loads(block))
            except json.JSONDecodeError:
                pass
        if not calls:
            messages.append({"role": "assistant", "content": text})
            break
        # What the model wrote, re-spelled as k2 writes calls back (json.dumps spacing).
        written = "\n".join(
            "<tool_call>\n" + json.dumps(c) + "\n</tool_call>" for c in calls
        )
        messages.append({"role": "assistant", "content": written})
        results = [
            "<tool_response>\n"
            + spec["tool_output"].replace("{topic}", str(c.get("arguments", {}).get("topic", "")))
            + "\n</tool_response>"
            for c in calls
        ]
        messages.append({"role": "user", "content": "\n".join(results)})
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "wall_s": wall,
                "steps": steps,
                "usage": usage,
                "messages": messages,
                "per_step": per_step,
                "openai": openai.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
