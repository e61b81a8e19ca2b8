// gen-tokenizer-goldens-chat.js adds to chat.json the IDs the Rust tokenizer
// gives each chat rendering with add_special_tokens=false (vLLM's default
// for chat).
//
//   node gen-tokenizer-goldens-chat.js ORACLE_DIR FIXTURES_DIR CHAT_JSON
'use strict';
const fs = require('fs');
const path = require('path');

const [oracleDir, fixtures, chatPath] = process.argv.slice(2);
const { Tokenizer } = require(path.join(oracleDir, 'node_modules', 'tokenizers'));

async function main() {
  const chat = JSON.parse(fs.readFileSync(chatPath, 'utf8'));
  chat.ids = {};
  for (const [model, renderings] of Object.entries(chat.renderings)) {
    const tok = Tokenizer.fromFile(path.join(fixtures, model, 'tokenizer.json'));
    chat.ids[model] = {};
    for (const [name, text] of Object.entries(renderings)) {
      if (typeof text !== 'string') continue; // the template raised an exception
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      chat.ids[model][name] = enc.getIds();
    }
  }
  fs.writeFileSync(chatPath, JSON.stringify(chat, null, 1) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
