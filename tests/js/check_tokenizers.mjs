// Compares sinklab's token ids (llm.c shards written by `sinklab tokenize --out`) with independent
// JavaScript tokenizers (tests/tokenizer_js_test.sh runs it; packages pinned in package-lock.json):
//   node check_tokenizers.mjs tiktoken TEXT IDS [TEXT IDS ...]
//       js-tiktoken's "gpt2" encoding, every special-token string read as text (encode_ordinary)
//   node check_tokenizers.mjs hf DIR TEXT IDS [TEXT IDS ...]
//       @huggingface/tokenizers loading DIR/tokenizer.json and DIR/tokenizer_config.json, no
//       special tokens added; its decode of the ids must give TEXT back
// Prints one line per text; exit status 1 at the first difference (shown with its context).
import fs from "node:fs";

// An llm.c shard: 256 x int32 header (magic 20240520, version 1 = uint16 / 2 = uint32, count).
function readShard(path) {
  const bytes = fs.readFileSync(path);
  const header = new Int32Array(bytes.buffer, bytes.byteOffset, 256);
  if (header[0] !== 20240520) throw new Error(`${path}: not an llm.c shard`);
  const count = header[2];
  const body = bytes.subarray(1024);
  const ids = new Array(count);
  for (let i = 0; i < count; i++)
    ids[i] = header[1] === 1 ? body.readUInt16LE(2 * i) : body.readUInt32LE(4 * i);
  return ids;
}

function compare(what, expected, actual) {
  const n = Math.max(expected.length, actual.length);
  for (let i = 0; i < n; i++) {
    if (expected[i] !== actual[i]) {
      const from = Math.max(0, i - 5);
      console.log(`FAIL ${what}: first difference at token ${i} of ${expected.length} ` +
                  `(sinklab has ${actual.length})`);
      console.log(`  expected ${JSON.stringify(expected.slice(from, i + 8))}`);
      console.log(`  sinklab  ${JSON.stringify(actual.slice(from, i + 8))}`);
      return false;
    }
  }
  console.log(`ok ${what}: ${expected.length} tokens equal`);
  return true;
}

const [mode, ...args] = process.argv.slice(2);
let encode, decode = null, label;
if (mode === "tiktoken") {
  const { getEncoding } = await import("js-tiktoken");
  const enc = getEncoding("gpt2");
  encode = (text) => enc.encode(text, [], []);
  label = "js-tiktoken gpt2";
} else if (mode === "hf") {
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const dir = args.shift();
  const json = (name) => JSON.parse(fs.readFileSync(`${dir}/${name}`, "utf8"));
  const tok = new Tokenizer(json("tokenizer.json"), json("tokenizer_config.json"));
  encode = (text) => tok.encode(text, { add_special_tokens: false }).ids;
  decode = (ids) => tok.decode(ids, { skip_special_tokens: false });
  label = `@huggingface/tokenizers ${dir}/tokenizer.json`;
} else {
  console.error("usage: check_tokenizers.mjs tiktoken|hf [DIR] TEXT IDS [TEXT IDS ...]");
  process.exit(2);
}
let ok = true;
for (let i = 0; i + 1 < args.length && ok; i += 2) {
  const text = fs.readFileSync(args[i], "utf8");
  const ids = readShard(args[i + 1]);
  ok = compare(`${label} on ${args[i]}`, encode(text), ids);
  if (ok && decode && decode(ids) !== text) {
    console.log(`FAIL ${label}: decoding sinklab's ids of ${args[i]} does not give the text back`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
