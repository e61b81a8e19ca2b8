// gen-tokenizer-goldens.js writes the token-ID goldens of the tokenization
// tests with the real HuggingFace tokenizer (the npm `tokenizers` binding of
// the Rust crate vLLM uses). Run it through hack/gen-tokenizer-goldens.sh.
//
//   node gen-tokenizer-goldens.js ORACLE_DIR FIXTURES_DIR OUT_DIR CORPUS_DIR SYNTHETIC_DIR
//
// Writes OUT_DIR/cases.jsonl (one JSON object per case: name and text) and
// OUT_DIR/<model>.jsonl (line i: [ids without special tokens, ids with]).
// The fuzz cases come from a seeded PRNG, so reruns are identical.
//
// It also writes small synthetic tokenizer.json files into SYNTHETIC_DIR
// that exercise components the real models do not use (lstrip, rstrip and
// single_word added tokens, normalized added tokens, Lowercase, NFKC, Strip,
// Replace, Prepend, Metaspace, Digits, every Split behaviour and invert,
// subword affixes, unk fusing, byte fallback, Roberta and template
// post-processors, GPT-2 ByteLevel with add_prefix_space), and their
// goldens as OUT_DIR/synthetic-<name>.jsonl.
'use strict';
const fs = require('fs');
const path = require('path');

const [oracleDir, fixtures, outDir, corpusDir, syntheticDir] = process.argv.slice(2);
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

// ---- synthetic tokenizers ----

function addedToken(id, content, o = {}) {
  return { id, content, single_word: !!o.single_word, lstrip: !!o.lstrip, rstrip: !!o.rstrip,
    normalized: !!o.normalized, special: !!o.special };
}

function bpeModel(vocab, merges, o = {}) {
  return { type: 'BPE', dropout: null, unk_token: o.unk ?? null, continuing_subword_prefix: o.prefix ?? null,
    end_of_word_suffix: o.suffix ?? null, fuse_unk: !!o.fuse_unk, byte_fallback: !!o.byte_fallback,
    ignore_merges: !!o.ignore_merges, vocab, merges };
}

// A vocabulary of single characters and their merges; merged tokens are
// added as the merges make them.
function charVocab(chars, mergeList, extra = []) {
  const vocab = {};
  const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
  extra.forEach(add);
  chars.forEach(add);
  for (const [a, b] of mergeList) { add(a); add(b); add(a + b); }
  return vocab;
}

const lower = 'abcdefghijklmnopqrstuvwxyz'.split('');
const ascii = []; for (let c = 0x20; c < 0x7f; c++) ascii.push(String.fromCharCode(c));
const englishMerges = [['t', 'h'], ['th', 'e'], ['i', 'n'], ['a', 'n'], ['e', 'r'], ['o', 'n'], ['r', 'e'], ['e', 's'],
  ['in', 'g'], ['a', 'a'], ['aa', 'aa'], ['=', '='], ['==', '=='], ['l', 'l'], ['o', 'r'], ['an', 'd']];

function synthetic() {
  const out = {};
  // A: normalized added tokens, flags, NFKC+Lowercase, Split Removed, Digits.
  {
    const vocab = charVocab([...ascii, 'ł', 'é', 'ß'], englishMerges, ['<s>', '<pad>', '</s>', '<unk>']);
    const n = Object.keys(vocab).length;
    out.addedflags = {
      version: '1.0', truncation: null, padding: null,
      added_tokens: [addedToken(0, '<s>', { special: true }), addedToken(2, '</s>', { special: true }), addedToken(3, '<unk>', { special: true }),
        addedToken(n, '<sp>', { special: true, lstrip: true, rstrip: true }),
        addedToken(n + 1, '[word]', { single_word: true, normalized: true }),
        addedToken(n + 2, 'ŁX', { normalized: true }),
        addedToken(n + 3, 'the', { normalized: true, lstrip: true })],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { Regex: '\\s+' }, behavior: 'Isolated', invert: false },
        { type: 'Digits', individual_digits: true }] },
      post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
      decoder: null,
      model: bpeModel(vocab, englishMerges.map(([a, b]) => `${a} ${b}`), { unk: '<unk>', fuse_unk: false }),
    };
  }
  // B: Metaspace (prepend first), byte fallback, fused unk, pair merges, template.
  {
    const extra = ['<unk>', '<s>', '</s>'];
    for (let b = 0; b < 256; b++) extra.push('<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>');
    const merges = [['▁', 't'], ['▁t', 'h'], ['▁th', 'e'], ['▁', 'a'], ['e', 'r'], ['▁', '▁'], ['▁▁', '▁▁'], ['a', 'a']];
    const vocab = charVocab([...lower, '▁', '.', ',', '!', 'é', '日'], merges, extra);
    out.metaspace = {
      version: '1.0', truncation: null, padding: null,
      added_tokens: [addedToken(0, '<unk>', { special: true }), addedToken(1, '<s>', { special: true }), addedToken(2, '</s>', { special: true }),
        addedToken(Object.keys(vocab).length, '<|x|>', { special: true })],
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
      post_processor: { type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } } },
      decoder: null,
      model: bpeModel(vocab, merges, { unk: '<unk>', fuse_unk: true, byte_fallback: true }),
    };
  }
  // C: Split behaviours and invert, Replace and Strip, subword affixes.
  {
    const chars = [...lower, '0', '1', '2', '3', '-', ',', ' ', '.'];
    const vocab = { '<unk>': 0 };
    const add = (t) => { if (!(t in vocab)) vocab[t] = Object.keys(vocab).length; };
    for (const c of chars) { add(c); add('##' + c); add(c + '</w>'); add('##' + c + '</w>'); }
    const merges = [];
    for (const [a, b] of [['t', '##h'], ['th', '##e</w>'], ['i', '##n'], ['a', '##n'], ['##e', '##r</w>'], ['1', '##2']]) {
      merges.push([a, b]); add(a); add(b); add(a + b.slice(2));
    }
    out.splits = {
      version: '1.0', truncation: null, padding: null, added_tokens: [addedToken(0, '<unk>', { special: true })],
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { Regex: '\\t+' }, content: ' ' },
        { type: 'Strip', strip_left: true, strip_right: true }, { type: 'Prepend', prepend: '-' },
        { type: 'Replace', pattern: { String: 'qq' }, content: 'q' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { String: '-' }, behavior: 'MergedWithPrevious', invert: false },
        { type: 'Split', pattern: { Regex: '[0-9]+' }, behavior: 'MergedWithNext', invert: false },
        { type: 'Split', pattern: { String: ',' }, behavior: 'Contiguous', invert: false },
        { type: 'Split', pattern: { Regex: '[a-z]+' }, behavior: 'Isolated', invert: true },
        { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false },
        { type: 'Digits', individual_digits: false }] },
      post_processor: null, decoder: null,
      model: bpeModel(vocab, merges, { unk: '<unk>', fuse_unk: true, prefix: '##', suffix: '</w>' }),
    };
  }
  // D: GPT-2 ByteLevel with add_prefix_space and the built-in regex.
  {
    const bytesToUnicode = () => {
      const bs = []; const cs = [];
      for (let b = 0; b < 256; b++) if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) { bs.push(b); cs.push(b); }
      let n = 0; for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
      const m = {}; bs.forEach((b, i) => { m[b] = String.fromCodePoint(cs[i]); }); return m;
    };
    const bu = bytesToUnicode();
    const chars = []; for (let b = 0; b < 256; b++) chars.push(bu[b]);
    const merges = [['Ġ', 't'], ['Ġt', 'h'], ['Ġth', 'e'], ['Ġ', 'a'], ['i', 'n'], ['Ġ', 'Ġ'], ['e', 'r'], ['Ġ', 'w'], ['o', 'r']];
    const vocab = charVocab(chars, merges, ['<|endoftext|>']);
    out.gpt2 = {
      version: '1.0', truncation: null, padding: null,
      added_tokens: [addedToken(0, '<|endoftext|>', { special: true })],
      normalizer: { type: 'NFD' },
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: null,
      model: bpeModel(vocab, merges.map(([a, b]) => `${a} ${b}`), {}),
    };
  }
  return out;
}

const syntheticHand = [
  'the <sp> the<sp>the  <sp>  x', '[word] a[word] [word]b x [word]. [WORD]', 'łx ŁX Łx ŁXŁX', 'The THE the  the',
  'ﬁne ① ｆｕｌｌ', '12 345 6', 'aaaaaaaa ====== ====', 'hello world. the end!', 'é 日本 Ω ✓', '<|x|> <|x|>the', ' the ',
  'a-b--c 12ab 3,,4,5 x-1', '\tqqq  tab\t\tbed ', 'the1 2the 12 in an', '<s></s><unk>', 'Hello  world\n\n  x', "I'm 's 'S",
];

async function synthGoldens(cases) {
  fs.mkdirSync(syntheticDir, { recursive: true });
  const sel = [...syntheticHand.map((text, i) => ({ name: `synthetic/${i}`, text })), ...cases.filter((c) => !c.name.startsWith('corpus/')).slice(0, 1200)];
  fs.writeFileSync(path.join(outDir, 'synthetic-cases.jsonl'), sel.map((c) => JSON.stringify(c)).join('\n') + '\n');
  for (const [name, json] of Object.entries(synthetic())) {
    const file = path.join(syntheticDir, `${name}.json`);
    fs.writeFileSync(file, JSON.stringify(json) + '\n');
    const tok = Tokenizer.fromFile(file);
    const lines = [];
    for (const c of sel) {
      const a = await tok.encode(c.text, null, { addSpecialTokens: false });
      const b = await tok.encode(c.text, null, { addSpecialTokens: true });
      lines.push(JSON.stringify([a.getIds(), b.getIds()]));
    }
    fs.writeFileSync(path.join(outDir, `synthetic-${name}.jsonl`), lines.join('\n') + '\n');
    console.log(`gen-tokenizer-goldens: synthetic ${name}: ${sel.length} cases`);
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
  await synthGoldens(cases);
}

main().catch((e) => { console.error(e); process.exit(1); });
