// gen-tokenizer-goldens.js writes the token-ID goldens of the tokenization
// tests with the real HuggingFace tokenizer (the npm `tokenizers` binding of
// the Rust crate vLLM uses). Run it through hack/gen-tokenizer-goldens.sh.
//
//   node gen-tokenizer-goldens.js ORACLE_DIR FIXTURES_DIR OUT_DIR CORPUS_DIR
//
// Writes OUT_DIR/cases.jsonl (one JSON object per case: name and text) and
// OUT_DIR/<model>.jsonl (line i: [ids without special tokens, ids with]).
// The fuzz cases come from a seeded PRNG, so reruns are identical.
'use strict';
const fs = require('fs');
const path = require('path');

const [oracleDir, fixtures, outDir, corpusDir] = process.argv.slice(2);
const { Tokenizer } = require(path.join(oracleDir, 'node_modules', 'tokenizers'));
const models = ['qwen3', 'llama3_1', 'llama2', 'gemma3', 'deepseek_v3'];

// mulberry32: a small deterministic PRNG.
function prng(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function corpusCases() {
  const cases = [];
  for (const file of fs.readdirSync(corpusDir).sort()) {
    const text = fs.readFileSync(path.join(corpusDir, file), 'utf8');
    const lines = text.split(/(?<=\n)/);
    let chunk = '', n = 0;
    const target = 1200;
    for (const line of lines) {
      chunk += line;
      if (chunk.length >= target) {
        cases.push({ name: `corpus/${file}#${n++}`, text: chunk });
        chunk = '';
      }
    }
    if (chunk) cases.push({ name: `corpus/${file}#${n++}`, text: chunk });
    cases.push({ name: `corpus/${file}#all`, text }); // one long input per file
  }
  return cases;
}

const hand = [
  '', ' ', '  ', '\n', '\n\n\n', ' \n ', '\t\tx', 'Hello world', ' Hello world', 'Hello  world  ',
  "I'm sure it's what they'd've said, WE'LL see; 'S 'ſ 'd' O'Neil",
  'aaaaaaaaaaaaaaaa', '================', '----------------------------------------', '!!!???...',
  '1234567890 12 3.14159 1,000,000 ٣٤٥ ⅷ ²³', 'x = a  >  1', 'if (x) {\n\treturn y;\n}\n',
  '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', '<s>Hello</s>', '<s> Hello', 'Hello<s>', '<bos><start_of_turn>user\nhi<end_of_turn>',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>', '<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>',
  '<think>\nok\n</think>\n\nanswer', 'e\u0301 é ﬁ ½ Å Å', 'İstanbul ǅ ß ΣΑΣ', 'naïve café résumé', '日本語のテキストと漢字', '한국어 문장입니다',
  'Привет, мир!', 'مرحبا بالعالم', 'שלום עולם', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', '👋🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖',
  '\u00a0\u00a0x\u3000y\u2003z \u200b\u200d\u2028', 'tab\there\r\nwindows\r\n\r\n', '   leading and trailing   ',
  '▁already▁meta', 'Ġbyte Ċ', '<0x41>', '<unk>', '\u0000\u0001\u007f', 'x\ufeffy', '\ufffd',
];

// Fragments the fuzz strings are built from.
const specials = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>', '<|begin_of_text|>',
  '<|eot_id|>', '<|start_header_id|>', '<s>', '</s>', '<unk>', '<bos>', '<eos>', '<start_of_turn>', '<end_of_turn>',
  '<｜begin▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>', '<|fim_prefix|>', '<pad>', '<mask>', '[multimodal]'];
const spaces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '\u00a0', '\u3000', '\u2009', '\u200b', '\u0085', '\u2028', '\v', '\f'];
const words = ['the', 'The', 'THE', 'hello', 'world', "don't", "it's", "I'LL", "you've", 'x', 'a', 'id', 'func', 'return',
  'naïve', 'Straße', 'ﬁnal', 'école', 'Ωμέγα', 'город', 'مرحبا', 'שלום', 'हिन्दी', 'ไทย', '中文', '日本語', 'カタカナ', 'ひらがな', '한국어',
  'ǅemal', 'İi', 'ſ', 'Ⅻ', 'µ', 'ꙮ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𠜎𠜱'];
const symbols = ['.', ',', '!', '?', ';', ':', '"', "'", '(', ')', '[', ']', '{', '}', '<', '>', '/', '\\', '|', '-', '_', '=', '+',
  '*', '&', '^', '%', '$', '#', '@', '~', '`', '...', '—', '–', '«', '»', '“', '”', '€', '£', '©', '→', '∑', '√', '•'];
const emoji = ['😀', '👍🏻', '👨‍💻', '🏳️‍🌈', '🇯🇵', '❤️', '✨', '🔥', '🤖', '1️⃣', '🧑🏾‍🚀'];
const combining = ['\u0301', '\u0300', '\u0308', '\u0327', '\u030a', '\u0323', '\u0336', '\u20dd', '\u093f', '\u0e31'];
const digits = ['0', '7', '42', '123', '2024', '3.14', '1e10', '0x1F', '١٢٣', '०१२', '½', '²'];

function fuzzCases(n, seed) {
  const rnd = prng(seed);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const cases = [];
  for (let i = 0; i < n; i++) {
    let s = '';
    const parts = 1 + Math.floor(rnd() * 14);
    for (let j = 0; j < parts; j++) {
      const k = rnd();
      if (k < 0.08) s += pick(specials);
      else if (k < 0.30) s += pick(spaces);
      else if (k < 0.55) s += pick(words);
      else if (k < 0.68) s += pick(symbols);
      else if (k < 0.74) s += pick(emoji);
      else if (k < 0.80) s += pick(words).slice(0, 1) + pick(combining);
      else if (k < 0.88) s += pick(digits);
      else if (k < 0.93) s += pick(symbols).repeat(1 + Math.floor(rnd() * 20)); // runs such as ==== or ----
      else if (k < 0.97) s += pick(spaces).repeat(1 + Math.floor(rnd() * 8));
      else s += String.fromCodePoint(randomCodePoint(rnd));
    }
    cases.push({ name: `fuzz/${i}`, text: s });
  }
  return cases;
}

// randomCodePoint returns a scalar value (no surrogates) assigned before
// Unicode 15.1, so that Go's Unicode 15.0 tables and the Rust crate's agree.
function randomCodePoint(rnd) {
  const ranges = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x52f], [0x590, 0x6ff], [0x900, 0xdff], [0xe00, 0xeff],
    [0x1100, 0x11ff], [0x2000, 0x2bff], [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xff00, 0xffef], [0x1f300, 0x1f64f]];
  for (;;) {
    const [lo, hi] = ranges[Math.floor(rnd() * ranges.length)];
    const cp = lo + Math.floor(rnd() * (hi - lo + 1));
    if (/\p{Cn}/u.test(String.fromCodePoint(cp))) continue; // unassigned in node's (newer) tables
    return cp;
  }
}

async function main() {
  const cases = [
    ...hand.map((text, i) => ({ name: `hand/${i}`, text })),
    ...corpusCases(),
    ...fuzzCases(3000, 20260522),
  ];
  fs.writeFileSync(path.join(outDir, 'cases.jsonl'), cases.map((c) => JSON.stringify(c)).join('\n') + '\n');
  for (const model of models) {
    const tok = Tokenizer.fromFile(path.join(fixtures, model, 'tokenizer.json'));
    const lines = [];
    for (const c of cases) {
      const without = await tok.encode(c.text, null, { addSpecialTokens: false });
      const withSp = await tok.encode(c.text, null, { addSpecialTokens: true });
      lines.push(JSON.stringify([without.getIds(), withSp.getIds()]));
    }
    fs.writeFileSync(path.join(outDir, `${model}.jsonl`), lines.join('\n') + '\n');
    console.log(`gen-tokenizer-goldens: ${model}: ${cases.length} cases`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
