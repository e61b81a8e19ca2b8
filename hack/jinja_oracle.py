"""jinja_oracle: Python Jinja2 configured as transformers' apply_chat_template
configures it (the environment vLLM renders chat templates in), the oracle of
kvtrack's Go renderer (tokenization/internal/jinja):

  * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with
    the loopcontrols extension and a {% generation %} block tag that renders
    its body (transformers' AssistantTracker, which only records offsets);
  * tojson replaced by json.dumps(x, ensure_ascii=False, indent=indent,
    separators=separators, sort_keys=sort_keys);
  * raise_exception(msg) raising TemplateError, strftime_now(fmt) formatting
    a pinned clock.
"""
import datetime
import json

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2026, 3, 14, 15, 9, 26)  # the pinned clock


class GenerationBlock(Extension):
    """{% generation %}...{% endgeneration %} renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment(now=NOW):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    return env


def render(template, variables):
    """Renders template; returns {"want": text} or {"error": message}."""
    try:
        return {"want": environment().from_string(template).render(**variables)}
    except Exception as e:  # any failure: the Go side must fail too
        return {"error": f"{type(e).__name__}: {e}"}
