#!/usr/bin/python3
"""compare-chat-templates.py renders every *.jinja file of a directory over
the chat-golden conversations with Python Jinja2 in transformers'
environment and vLLM's preprocessing (the same oracle as the committed
goldens), and writes the results as JSON for the Go side to compare with:

    /usr/bin/python3 hack/compare-chat-templates.py DIR OUT.json
    KVTRACK_TEMPLATES=DIR KVTRACK_TEMPLATE_RESULTS=OUT.json \\
        go test ./tokenization -run TestExternalTemplates -v

It is how tokenization/README.md's table of public templates (vLLM's
examples/tool_chat_template_*.jinja, gpt-oss's harmony template) was
made. Their sources are read locally and never committed.
"""
import glob
import importlib.util
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("chatgoldens", os.path.join(here, "gen-tokenizer-goldens-chat.py"))
chatgoldens = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chatgoldens)

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}

# Every conversation, and each one without tools again with the tool
# definitions: many tool templates need tools to render at all.
CONVERSATIONS = chatgoldens.CONVERSATIONS + [
    dict(c, name=c["name"] + "+tools", tools=chatgoldens.TOOLS) for c in chatgoldens.CONVERSATIONS if not c.get("tools")]


def main():
    src_dir, out_path = sys.argv[1], sys.argv[2]
    result = {"special_tokens": SPECIAL, "conversations": CONVERSATIONS, "templates": {}}
    for path in sorted(glob.glob(os.path.join(src_dir, "*.jinja"))):
        with open(path, encoding="utf-8") as f:
            template = f.read()
        name = os.path.basename(path)
        entry = {"renderings": {}}
        try:
            entry["format"] = chatgoldens.content_format(template)
        except Exception as e:
            entry["parse_error"] = f"{type(e).__name__}: {e}"
            result["templates"][name] = entry
            continue
        for c in CONVERSATIONS:
            try:
                entry["renderings"][c["name"]] = chatgoldens.render(template, SPECIAL, c)
            except Exception as e:
                entry["renderings"][c["name"]] = {"error": f"{type(e).__name__}: {e}"}
        result["templates"][name] = entry
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"compare-chat-templates: {len(result['templates'])} templates -> {out_path}")


if __name__ == "__main__":
    main()
