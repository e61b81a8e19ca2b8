#!/usr/bin/python3
"""gen-tokenizer-goldens-chat.py renders the chat-template goldens of every
fetched model with a chat template, with Python Jinja2 configured as
transformers' apply_chat_template is when vLLM calls it (jinja_oracle.py),
the special tokens of tokenizer_config.json, and vLLM's message
preprocessing: content format detection on Jinja2's AST ("string" or
"openai"), content parts flattened accordingly, tool-call arguments parsed,
tool definitions shaped as vLLM's pydantic models dump them.

    /usr/bin/python3 gen-tokenizer-goldens-chat.py FIXTURES_DIR OUT.json

Run through hack/gen-tokenizer-goldens.sh, which then adds the Rust
tokenizer's IDs of each rendering (gen-tokenizer-goldens-chat.js).
"""
import copy
import json
import os
import sys

import jinja2.nodes as jn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jinja_oracle  # noqa: E402

MODELS = ["qwen3", "llama3_1", "deepseek_v3", "gemma3"]
NOW = jinja_oracle.NOW

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
    {"name": "tools-no-system", "add_generation_prompt": True, "tools": TOOLS, "messages": [
        {"role": "user", "content": "Search for kv caches, then the weather in Oslo."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "search", "arguments": "{\"q\": \"kv cache\", \"n\": 2}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "snippet one"}, {"type": "text", "text": "snippet two"}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "{\"temp\": -3}"}]},
    {"name": "system-parts-multi-turn", "add_generation_prompt": False, "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1", "reasoning": "thinking about Q1"},
        {"role": "user", "content": [{"type": "text", "text": "Q2 "}, "plain string part"]},
        {"role": "assistant", "content": [{"type": "text", "text": "A2"}]}]},
    {"name": "continue-final-parts", "add_generation_prompt": False, "continue_final_message": True, "messages": [
        {"role": "user", "content": "Write a list."},
        {"role": "assistant", "content": [{"type": "text", "text": "1. apples\n2. "}]}]},
    {"name": "roles-not-alternating", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"}]},
]


def special_tokens(config):
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    return out


def content_format(template):
    """vLLM's content format detection on Jinja2's own AST: "openai" when
    the template loops over message['content'] (or .content) of a loop
    variable over messages (or an alias set from it), else "string"."""
    ast = jinja_oracle.environment().parse(template)

    def access(node, name, key=None):
        if isinstance(node, (jn.Filter, jn.Test)):
            return node.node is not None and access(node.node, name, key)
        if isinstance(node, jn.Getitem) and isinstance(node.arg, jn.Slice):
            return access(node.node, name, key)
        if key is None:
            return isinstance(node, jn.Name) and node.ctx == "load" and node.name == name
        if isinstance(node, jn.Getitem):
            return access(node.node, name) and isinstance(node.arg, jn.Const) and node.arg.value == key
        if isinstance(node, jn.Getattr):
            return access(node.node, name) and node.attr == key
        return False

    msg_vars = ["messages"]
    for name in msg_vars:
        for a in ast.find_all(jn.Assign):
            if access(a.node, name):
                if not isinstance(a.target, jn.Name):
                    return "string"
                if a.target.name not in msg_vars:
                    msg_vars.append(a.target.name)
    item_vars = []
    for loop in ast.find_all(jn.For):
        if any(access(loop.iter, v) for v in msg_vars):
            if not isinstance(loop.target, jn.Name):
                return "string"
            item_vars.append(loop.target.name)
    for loop in ast.find_all(jn.For):
        if any(access(loop.iter, v, "content") for v in item_vars):
            return "openai" if isinstance(loop.target, jn.Name) else "string"
    return "string"


TEXT_KEYS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal", "thinking": "thinking"}


def preprocess(messages, fmt):
    """vLLM's parse_chat_messages for text content: each message becomes
    role and content (text parts joined with "\n" for "string" templates,
    [{"type": "text", "text": ...}] for "openai" ones), then tool_calls
    (string arguments parsed from JSON, {} when they do not parse),
    reasoning and reasoning_content (assistant), tool_call_id (tool; list
    content of text parts joined), name."""
    out = []
    for m in messages:
        content = m.get("content")
        if content is None:
            content = []
        elif isinstance(content, str):
            content = [{"type": "text", "text": content}]
        texts = []
        for p in content:
            if isinstance(p, str):
                texts.append(p)
            elif p.get(TEXT_KEYS.get(p.get("type"), "")) is not None:
                texts.append(p[TEXT_KEYS[p["type"]]])
        if fmt == "openai":
            msg = {"role": m["role"], "content": [{"type": "text", "text": t} for t in texts]}
        else:
            msg = {"role": m["role"], "content": "\n".join(texts)}
        if m["role"] == "assistant":
            if m.get("tool_calls") is not None:
                msg["tool_calls"] = copy.deepcopy(m["tool_calls"])
            if m.get("reasoning") is not None:
                msg["reasoning"] = m["reasoning"]
                msg["reasoning_content"] = m["reasoning"]
        elif m["role"] == "tool":
            if "tool_call_id" in m:
                msg["tool_call_id"] = m["tool_call_id"]
            if isinstance(msg["content"], list):
                msg["content"] = "\n".join(p["text"] for p in msg["content"])
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    for msg in out:
        calls = msg.get("tool_calls")
        if not isinstance(calls, list):
            continue
        if not calls:
            del msg["tool_calls"]
        for call in calls:
            args = call["function"].get("arguments")
            if isinstance(args, str):
                try:
                    call["function"]["arguments"] = json.loads(args)
                except json.JSONDecodeError:
                    call["function"]["arguments"] = {}
            elif not isinstance(args, (dict, list)):
                call["function"]["arguments"] = {}
    return out


def vllm_tools(tools):
    """The tool dicts vLLM passes to templates: its pydantic models'
    model_dump(), with name, description, parameters and strict always
    present."""
    if tools is None:
        return None
    out = []
    for t in tools:
        fn = t["function"]
        f = {"name": fn["name"], "description": fn.get("description"), "parameters": fn.get("parameters"), "strict": fn.get("strict")}
        f.update({k: v for k, v in fn.items() if k not in f})
        d = {"type": t.get("type", "function"), "function": f}
        d.update({k: v for k, v in t.items() if k not in d})
        out.append(d)
    return out


def final_text(message):
    content = message["content"]
    if isinstance(content, list):
        for block in reversed(content):
            if "text" in block:
                return block["text"]
        raise ValueError("no text to continue in the final message")
    return content


def render(template, config, conv):
    """transformers' apply_chat_template as vLLM calls it."""
    messages = preprocess(conv["messages"], content_format(template))
    kwargs = dict(special_tokens(config))
    kwargs.update(conv.get("chat_template_kwargs", {}))
    text = jinja_oracle.environment().from_string(template).render(
        messages=messages, tools=vllm_tools(conv.get("tools")), documents=None,
        add_generation_prompt=conv.get("add_generation_prompt", False), **kwargs)
    if conv.get("continue_final_message"):
        final = final_text(messages[-1])
        loc = text.rindex(final.strip())
        if text[loc:loc + len(final.lstrip())] == final:
            text = text[:loc + len(final.lstrip())]
        else:
            text = text[:loc + len(final.strip())]
    return text


def main():
    fixtures, out_path = sys.argv[1], sys.argv[2]
    result = {"now": NOW.isoformat(), "conversations": CONVERSATIONS, "formats": {}, "renderings": {}}
    for model in MODELS:
        with open(f"{fixtures}/{model}/tokenizer_config.json", encoding="utf-8") as f:
            config = json.load(f)
        template = config["chat_template"]
        result["formats"][model] = content_format(template)
        out = result["renderings"][model] = {}
        for c in CONVERSATIONS:
            try:
                out[c["name"]] = render(template, config, c)
            except Exception as e:  # raise_exception and the like: the Go side must fail too
                out[c["name"]] = {"error": f"{type(e).__name__}: {e}"}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
