#!/usr/bin/python3
"""gen-tokenizer-goldens-chat.py renders the chat-template goldens with Python
Jinja2 configured as transformers' apply_chat_template (as vLLM calls it):
ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks, loopcontrols), a
json.dumps-compatible tojson, raise_exception and strftime_now at a pinned
date, the special tokens of tokenizer_config.json, and vLLM's message
preprocessing (content parts joined with "\\n", tool-call arguments parsed).

    /usr/bin/python3 gen-tokenizer-goldens-chat.py FIXTURES_DIR OUT.json

Run through hack/gen-tokenizer-goldens.sh, which then adds the Rust
tokenizer's IDs of each rendering (gen-tokenizer-goldens-chat.js).
"""
import copy
import datetime
import json
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODELS = ["qwen3", "llama3_1", "deepseek_v3", "gemma3"]
NOW = datetime.datetime(2026, 3, 14, 15, 9, 26)  # the pinned clock

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city, in °C.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. \"Zürich\""},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search <the> web & return 'snippets'.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer", "default": 3}}}}},
]

CONVERSATIONS = [
    {"name": "system-unicode", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant. Réponds en français si on te parle français."},
        {"role": "user", "content": "Bonjour ! Quelle est la capitale du Japon ? 日本の首都は？ 👋"},
        {"role": "assistant", "content": "Tokyo (東京)."},
        {"role": "user", "content": "  And its population?\n\n"}]},
    {"name": "no-system", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Write a haiku about KV caches."}]},
    {"name": "no-generation-prompt", "add_generation_prompt": False, "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"}]},
    {"name": "thinking-disabled", "add_generation_prompt": True, "chat_template_kwargs": {"enable_thinking": False}, "messages": [
        {"role": "user", "content": "2+2?"}]},
    {"name": "think-history", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "<think>\nCheck divisors up to 4.\n</think>\n\nYes, 17 is prime."},
        {"role": "user", "content": "And 21?"}]},
    {"name": "content-parts", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "First part."}, {"type": "text", "text": "Second part."}]}]},
    {"name": "continue-final", "add_generation_prompt": False, "continue_final_message": True, "messages": [
        {"role": "user", "content": "Count to five."},
        {"role": "assistant", "content": "One, two, three"}]},
    {"name": "tools", "add_generation_prompt": True, "tools": TOOLS, "messages": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21.5 °C and clear."},
        {"role": "user", "content": "Thanks!"}]},
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return env


def special_tokens(config):
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    return out


def preprocess(messages):
    """vLLM's message preprocessing for templates whose content format is
    "string": each message becomes role, content (text parts joined with
    "\n"; none becomes ""), then tool_calls (arguments parsed from JSON,
    empty ones as {}), tool_call_id and name when present."""
    out = []
    for m in messages:
        content = m.get("content")
        if content is None:
            content = []
        elif isinstance(content, str):
            content = [{"type": "text", "text": content}]
        msg = {"role": m["role"], "content": "\n".join(p["text"] for p in content if p.get("type") == "text")}
        if m["role"] == "assistant" and m.get("tool_calls") is not None:
            msg["tool_calls"] = copy.deepcopy(m["tool_calls"])
            for call in msg["tool_calls"]:
                args = call["function"].get("arguments")
                if args:
                    if not isinstance(args, (dict, list)):
                        call["function"]["arguments"] = json.loads(args)
                else:
                    call["function"]["arguments"] = {}
        if m["role"] == "tool" and "tool_call_id" in m:
            msg["tool_call_id"] = m["tool_call_id"]
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def render(template, config, conv):
    messages = preprocess(conv["messages"])
    kwargs = dict(special_tokens(config))
    kwargs.update(conv.get("chat_template_kwargs", {}))
    text = environment().from_string(template).render(
        messages=messages, tools=conv.get("tools"), documents=None,
        add_generation_prompt=conv.get("add_generation_prompt", False), **kwargs)
    if conv.get("continue_final_message"):
        final = messages[-1]["content"]
        loc = text.rindex(final.strip())
        if text[loc:loc + len(final.lstrip())] == final:
            text = text[:loc + len(final.lstrip())]
        else:
            text = text[:loc + len(final.strip())]
    return text


def main():
    fixtures, out_path = sys.argv[1], sys.argv[2]
    result = {"now": NOW.isoformat(), "conversations": CONVERSATIONS, "renderings": {}}
    for model in MODELS:
        with open(f"{fixtures}/{model}/tokenizer_config.json", encoding="utf-8") as f:
            config = json.load(f)
        template = config["chat_template"]
        out = result["renderings"][model] = {}
        for c in CONVERSATIONS:
            try:
                out[c["name"]] = render(template, config, c)
            except jinja2.exceptions.TemplateError as e:
                out[c["name"]] = {"error": str(e)}  # raise_exception: the Go side must fail too
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
