#!/usr/bin/python3
"""gen-jinja-goldens.py renders the construct templates below with
jinja_oracle (Python Jinja2 in transformers' environment) and writes
tokenization/internal/jinja/testdata/goldens.json: each case's template,
variables and either the rendering ("want") or the error Jinja2 raised
("error"; the Go renderer must fail too).

    /usr/bin/python3 hack/gen-jinja-goldens.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jinja_oracle  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "  Hello, World! 你好 "},
    {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHi there.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}}]},
    {"role": "tool", "content": "{\"t\": 21.5}", "tool_call_id": "c1"},
    {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "image"}, {"type": "text", "text": "part two"}]},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather \"now\" in °C",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                                                          "required": ["city"]}}}]
VARS = {"messages": MESSAGES, "tools": TOOLS, "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True,
        "n": 7, "f": 2.5, "neg": -3, "s": "Hello World", "empty": "", "lst": [3, 1, 2], "words": ["b", "A", "c", "a"],
        "d": {"z": 1, "a": 2, "m": None}, "nested": {"a": {"b": [10, 20, 30]}}, "flag": False, "none": None,
        "people": [{"name": "Ann", "age": 31, "tags": ["x"]}, {"name": "bob", "age": 25}, {"name": "Cy", "age": 31, "admin": True}]}

CASES = [
    # whitespace control: trim_blocks, lstrip_blocks, -, +
    ("ws-trim-lstrip", "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.role }}]\n    {% endif %}\n{% endfor %}\nend"),
    ("ws-minus", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c {{- ' d ' -}} e"),
    ("ws-plus", "x\n    {%+ if true +%}\ny\n    {%+ endif %}\nz"),
    ("ws-var-no-trim", "{{ 'a' }}\n{{ 'b' }}\n  {{ 'c' }}\n"),
    ("ws-comment", "a\n  {# a comment #}\nb {#- stripped -#}   c\n{# eats newline #}\nd"),
    ("ws-inline-block-no-lstrip", "x {% if true %}y{% endif %} z\n  text {% if true %}\nq{% endif %}"),
    ("ws-crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n"),
    ("ws-trailing-newlines", "a\n\n"),
    ("raw", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}\n{%- raw -%}  x  {%- endraw %}"),
    # expressions
    ("inline-if", "{{ 'yes' if flag else 'no' }}|{{ ('a' if n > 3 else 'b') ~ '!' }}|{{ 'x' if flag }}|{{ (s if true else '') | upper }}"),
    ("inline-if-in-call", "{% for m in messages %}{{ (m.role ~ ':' if loop.first else '') }}{% endfor %}"),
    ("gemma-first-user-prefix", "{% set first_user_prefix = 'SYS\n\n' %}{% for message in messages[1:] %}{{ (first_user_prefix if loop.first else '') }}{{ message.role }};{% endfor %}"),
    ("arith", "{{ n + 1 }} {{ n - 10 }} {{ n * 2 }} {{ n / 2 }} {{ n // 2 }} {{ n % 3 }} {{ neg // 2 }} {{ neg % 5 }} {{ 2 ** 10 }} {{ f * 2 }} {{ 1 + 2.0 }} {{ -n }} {{ 10 / 4 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }}"),
    ("concat-tilde", "{{ 'a' ~ n ~ none ~ flag ~ f ~ lst ~ d }}"),
    ("string-plus-mul", "{{ 'ab' + 'cd' }} {{ '=' * 5 }} {{ [1] + [2, 3] }} {{ 3 * 'x' }}"),
    ("compare-chain", "{{ 1 < n < 10 }} {{ n == 7.0 }} {{ 'a' < 'b' }} {{ n != 7 }} {{ [1, 2] == [1, 2] }} {{ none == none }} {{ true == 1 }}"),
    ("in-not-in", "{{ 'ell' in s }} {{ 3 in lst }} {{ 'z' in d }} {{ 'q' not in d }} {{ not 'x' in s }} {{ 'role' in messages[0] }}"),
    ("is-not", "{{ none is none }} {{ n is not none }} {{ d.q is not defined }} {{ s is not string }} {{ n is not even }}"),
    ("and-or-not", "{{ flag or 'fallback' }} {{ s and n }} {{ not flag and not none }} {{ empty or none }} {{ 0 or [] }}"),
    ("literals", "{{ [1, 'two', 3.0, none, true, false] }} {{ {'k': 'v', 'n': [1, (2, 3)]} }} {{ (1,) }} {{ () }} {{ \"it's\" }} {{ 'say \"hi\"' }} {{ 'tab\\tnl\\nuni\\u00e9' }}"),
    ("string-escapes-repr", "{{ ['a\\nb', 'q\\'s', \"d\\\"q\", 'both\\'\"', '\\\\'] }}"),
    ("adjacent-strings", "{{ 'a' 'b' \"c\" }}"),
    ("subscript-neg-slice", "{{ lst[-1] }} {{ lst[1:] }} {{ lst[:-1] }} {{ lst[::-1] }} {{ lst[::2] }} {{ s[-5:] }} {{ s[::-1] }} {{ s[0] }} {{ messages[-1].role }} {{ lst[10] }}|{{ lst[-10:10] }} {{ lst[5:1:-1] }} {{ s[2:0] }}"),
    ("attr-vs-item", "{{ d.z }} {{ d['a'] }} {{ nested.a.b[1] }} {{ nested['a']['b'][-1] }} {{ lst.0 }} {{ d.missing }}|{{ d['missing'] }}|{{ none.x }}"),
    ("undefined-ops", "{{ missing }}|{{ missing is defined }}|{{ missing | default('dflt') }}|{{ missing ~ 'x' }}|{{ missing | length }}|{% for x in missing %}no{% endfor %}|{{ not missing }}"),
    ("undefined-attr-error", "{{ missing.attr }}"),
    ("undefined-plus-error", "{{ missing + 1 }}"),
    # string methods
    ("str-methods", "{{ s.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello wORLD it\\'s'.title() }}|{{ s.startswith('Hell') }}|{{ s.endswith(('x', 'ld')) }}|{{ s.replace('l', 'L') }}|{{ s.replace('l', 'L', 1) }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split(' ', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ s.find('o') }}|{{ s.count('l') }}|{{ '-'.join(['a', 'b']) }}|{{ 'abc'.capitalize() }}|{{ 'x\\ny\\r\\nz'.splitlines() }}|{{ '42'.isdigit() }}|{{ s.rfind('o') }}"),
    ("str-method-chain", "{% for m in messages if m.content is string %}{{ m.content.split('</think>')[-1].lstrip('\\n').strip() }};{% endfor %}"),
    ("str-method-unsupported", "{{ s.center(20) }}"),
    # filters
    ("filters-basic", "{{ '  t  ' | trim }}|{{ s | length }}|{{ lst | count }}|{{ words | join(', ') }}|{{ lst | first }}|{{ lst | last }}|{{ s | upper }}|{{ s | lower }}|{{ 'hELLO wOrld-x' | title }}|{{ 'hELLO' | capitalize }}|{{ n | string }}|{{ '12' | int + 1 }}|{{ '3.7' | int }}|{{ 'x' | int }}|{{ '2.5' | float }}|{{ neg | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.1 | round(0, 'ceil') }}|{{ s | replace('o', '0') }}"),
    ("filter-default", "{{ missing | default('a') }}|{{ empty | default('b') }}|{{ empty | default('c', true) }}|{{ none | d('e') }}|{{ flag | default('f', boolean=true) }}"),
    ("filter-map-select", "{{ people | map(attribute='name') | join(',') }}|{{ words | map('upper') | list }}|{{ lst | select('odd') | list }}|{{ lst | reject('odd') | list }}|{{ people | selectattr('age', 'equalto', 31) | map(attribute='name') | list }}|{{ people | rejectattr('admin') | map(attribute='name') | join }}|{{ people | selectattr('admin', 'defined') | list | length }}|{{ messages | selectattr('role', 'eq', 'user') | list | length }}|{{ lst | map('string') | join('-') }}"),
    ("filter-generator-truthy", "{% if messages | selectattr('role', 'eq', 'nobody') %}generator is true{% endif %}"),
    ("filter-generator-print", "{{ lst | select('odd') }}"),
    ("filter-items-dictsort", "{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d | dictsort %}{{ k }}={{ v }};{% endfor %}|{{ d | dictsort(reverse=true) }}|{% for k, v in d.items() %}{{ k }}{% endfor %}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}{{ d.get('q', 'dq') }}{{ d.get('q') }}"),
    ("filter-list-unique-batch", "{{ s | list | length }}|{{ d | list }}|{{ words | unique | list }}|{{ words | unique(case_sensitive=true) | list }}|{{ [1,2,3,4,5] | batch(2) | list }}|{{ [1,2,3] | batch(2, 'x') | list }}|{{ words | sort }}|{{ words | sort(reverse=true, case_sensitive=true) }}|{{ people | sort(attribute='age') | map(attribute='name') | join }}|{{ lst | reverse | list }}|{{ lst | sum }}|{{ lst | max }}|{{ words | min }}"),
    ("filter-indent", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}|{{ 'x\\n' | indent(first=true) }}"),
    ("filter-tojson", "{{ tools | tojson }}|{{ messages[2].tool_calls[0].function.arguments | tojson }}|{{ d | tojson(indent=2) }}|{{ {'b': 1, 'a': [1.0, 1e-07, none]} | tojson(sort_keys=true) }}|{{ 'é\"\\n<>&' | tojson }}|{{ [] | tojson(indent=4) }}|{{ (1, 2) | tojson }}|{{ d | tojson(separators=(',', ':')) }}|{{ {1: 'x', true: 'y'} | tojson }}"),
    ("filter-tojson-undefined", "{{ missing | tojson }}"),
    ("filter-escape-safe", "{{ '<a href=\"x\">&\\'</a>' | e }}|{{ '<b>' | safe }}"),
    ("markup-plus-escapes", "{{ 'Use <' | safe + s + '>' | safe + '<&\\'\"' + tools[0] | tojson }}|{{ '<a>' + '<b>' | safe }}|{{ ('<i>' | safe) * 2 }}|{{ '<x>' | safe ~ '<y>' }}|{{ '<x>' | e + '<y>' }}|{{ ('<q>' | safe) == '<q>' }}|{{ '<q>' | safe | length }}|{{ ('<q>' | safe) is string }}"),
    ("markup-methods-filters", "{{ ('  <A> ' | safe).strip() + '<' }}|{{ ('<A>' | safe).lower() + '&' }}|{{ ('a,b' | safe).split(',') }}|{{ ('<a>' | safe | upper) + '<' }}|{{ ('<a> ' | safe | trim) + '<' }}|{{ ('-' | safe).join(['<', '>']) }}|{{ ('x<y' | safe).replace('<', '>') }}|{{ ['<'] | map('safe') | join(',') }}|{{ ('<a>' | safe)[1] + '<' }}|{{ ('<a>' | safe)[1:] + '<' }}|{{ ('x<y' | safe).replace('<', '>', 1) }}|{{ ('<a>' | safe).startswith('<') }}|{{ '<a>' | safe | default('x') + '<' }}"),
    ("markup-macro-result-is-plain", "{% macro m() %}<m>{% endmacro %}{{ m() + '<' }}"),
    ("filter-block", "{% filter upper %}shout {{ s }}{% endfilter %}"),
    ("unknown-filter", "{{ s | nosuchfilter }}"),
    ("unknown-filter-in-if-not-run", "{% if false %}{{ s | nosuchfilter }}{% elif n is even %}{{ n is nosuchtest }}{% endif %}ok{{ (s | nosuchfilter) if false else 'y' }}"),
    ("unknown-filter-in-if-run", "{% if true %}{{ s | nosuchfilter }}{% endif %}"),
    ("unknown-filter-in-loop-in-if", "{% if false %}{% for x in lst %}{{ x | nosuchfilter }}{% endfor %}{% endif %}"),
    ("unknown-filter-in-macro-in-if", "{% if false %}{% macro m() %}{{ 1 | nosuchfilter }}{% endmacro %}{% endif %}"),
    ("unsupported-filter", "{{ s | center(30) }}"),
    # tests
    ("tests", "{{ n is defined }} {{ missing is undefined }} {{ none is none }} {{ s is string }} {{ d is mapping }} {{ lst is iterable }} {{ s is iterable }} {{ lst is sequence }} {{ d is sequence }} {{ n is number }} {{ f is number }} {{ flag is number }} {{ flag is boolean }} {{ n is boolean }} {{ n is integer }} {{ f is float }} {{ 3 is in lst }} {{ 'a' is in 'cat' }} {{ n is equalto 7 }} {{ n is eq(7) }} {{ n is odd }} {{ 8 is even }} {{ 9 is divisibleby 3 }} {{ s is lower }} {{ 'ABC' is upper }} {{ range is callable }} {{ flag is false }} {{ true is true }} {{ n is gt 3 }} {{ n is ge(7) }} {{ n is lt 3 }} {{ n is ne 7 }} {{ none is sameas none }}"),
    ("unknown-test", "{{ n is nosuchtest }}"),
    # statements
    ("for-loop-vars", "{% for x in lst %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a', 'b') }};{% endfor %}"),
    ("for-else-filter", "{% for x in lst if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}|{% for x in [] %}x{% else %}empty{% endfor %}"),
    ("for-unpack-dict-string", "{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for c in 'hé!' %}[{{ c }}]{% endfor %}"),
    ("for-break-continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 5 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("for-scoping", "{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}|{% for i in range(3) %}{% if i == 1 %}{% set y = 5 %}{% endif %}{{ y }}{% endfor %}{{ y }}"),
    ("nested-loops", "{% for m in messages %}{% for k in ['role'] %}{{ loop.index }}{{ m[k][0] }}{% endfor %}{{ loop.index }}{% endfor %}"),
    ("range", "{{ range(3) | list }}{{ range(1, 10, 3) | list }}{{ range(5, 0, -2) | list }}"),
    ("namespace", "{% set ns = namespace(found=false, count=0, last='') %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }} {{ ns.last }} {{ ns.missing is defined }}"),
    ("set-forms", "{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = (3, 4) %}{% set c, e = t %}{{ c }}{{ e }}|{% set block %}inside {{ n }}{% endset %}[{{ block }}]|{% set up | upper %}shout{% endset %}{{ up }}"),
    ("if-elif-else", "{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %} {% endfor %}"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }} {{ greet('Dee') | upper }}"),
    ("macro-recursive-json", "{% macro render(v) %}{% if v is mapping %}{% for k, x in v.items() %}{{ k }}:{{ render(x) }};{% endfor %}{% elif v is iterable and v is not string %}[{% for x in v %}{{ render(x) }}{% endfor %}]{% else %}{{ v }}{% endif %}{% endmacro %}{{ render(tools[0].function.parameters) }}"),
    ("macro-sees-later-globals", "{% macro m() %}{{ x }}{% endmacro %}{% set x = 1 %}{{ m() }}"),
    ("call-block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ n }}{% endcall %}|{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each(lst) %}({{ item }}){% endcall %}"),
    ("raise-exception", "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"),
    ("strftime-now", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %p %I %y') }}"),
    ("generation-block", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% endif %}{% endfor %}"),
    ("dict-global", "{{ dict(a=1, b='x') }}|{{ dict(a=1).a }}"),
    ("content-parts-loop", "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{% if p.type == 'text' %}{{ p.text }}{% elif p.type == 'image' %}<img>{% endif %}{% endfor %}{% endif %}\n{% endfor %}"),
    ("print-containers", "{{ messages[0] }}|{{ d.items() }}|{{ people[0] }}|{{ 1.0 }}{{ 100.0 }}{{ 1e16 }}{{ 0.0001 }}{{ 0.00001 }}{{ -0.0 }}"),
    ("edge-printing", "{{ none }}|{{ [] }}|{{ {} }}|{{ 7 / 7 }}|{{ 10 // 3 }} {{ -10 // 3 }} {{ 10 % -3 }} {{ 2 ** -1 }}|{{ 1.0 == 1 }} {{ '1' == 1 }} {{ (1, 2) == [1, 2] }}|{{ d | items | list }}|{{ lst | join }}|{{ 'x' | tojson }}|{{ 3.7 | round | int }}|{{ '%.1f' | format(3.14159) }}"),
    ("edge-unicode-case", "{{ 'straße'.upper() }}|{{ 'ǅ'.lower() }}|{{ 'ﬁne'.upper() }}|{{ 'ǆemal'.title() }}|{{ 'Σ'.lower() }}|{{ 'ΑΣ'.lower() }}"),
    ("edge-loops", "{% for a in [1, 2] %}{% for b in [3] %}{{ loop.index }}{{ loop.length }}{% endfor %}{{ loop.index }}{% endfor %}|{% for x in lst | sort %}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}|{% for k, v in d.items() if v %}{{ k }}{% endfor %}"),
    ("edge-macro-caller-args", "{% macro list_items(items) %}{% for i in items %}{{ caller(i, loop.index) }}{% endfor %}{% endmacro %}{% call(item, n) list_items(['a', 'b']) %}[{{ n }}:{{ item }}]{% endcall %}"),
    ("edge-select-tests", "{{ lst | select('gt', 1) | list }}|{{ lst | select('in', [1, 2]) | list }}|{{ people | selectattr('name', 'string') | map(attribute='age') | sum }}|{{ words | map('lower') | unique | list }}"),
    # failures that must be errors, never renderings
    ("syntax-unbalanced", "{{ (1 + 2 }}"),
    ("syntax-unclosed-if", "{% if true %}never closed"),
    ("syntax-endfor-mismatch", "{% for x in lst %}{% endif %}"),
    ("unsupported-include", "{% include 'other.jinja' %}"),
    ("unsupported-extends", "{% extends 'base.jinja' %}"),
    ("list-append-unsafe", "{% set l = [] %}{{ l.append(1) }}"),
    ("string-format-percent", "{{ '%s!' % s }}|{{ '%s-%d-%.2f-%5s|%-4d|%x|%05d|%+d|%r|%%|%c' % ('a', 3, 2.345, 'b', 7, 255, 42, 5, 'q', 65) }}|{{ '%(a)s+%(z)s' % d }}|{{ '%d' % 3.9 }}|{{ '%s' % [1, 2] }}|{{ '%s' % none }}"),
    ("filter-format", "{{ '%s' | format(lst) }}|{{ '%s=%s' | format('k', 1.0) }}|{{ '%(x)s' | format(x='kw') }}|{{ none | map('upper') | list }}|{{ none | selectattr('a') | list }}"),
    ("string-format-too-few", "{{ '%s %s' % ('a',) }}"),
    ("string-format-too-many", "{{ '%s' % ('a', 'b') }}"),
    ("not-callable", "{{ s() }}"),
    ("loopcontrol-outside", "{% break %}"),
    ("division-by-zero", "{{ n / 0 }}"),
    ("big-integers", "{{ 2 ** 62 }}|{{ 2 ** 63 }}"),
    ("compare-type-error", "{{ 'a' < 1 }}"),
]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, "tokenization", "internal", "jinja", "testdata", "goldens.json")
    result = {"now": jinja_oracle.NOW.isoformat(), "vars": VARS, "cases": []}
    for name, template in CASES:
        case = {"name": name, "template": template}
        case.update(jinja_oracle.render(template, VARS))
        result["cases"].append(case)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"gen-jinja-goldens: {len(CASES)} cases -> {os.path.relpath(out, root)}")


if __name__ == "__main__":
    main()
