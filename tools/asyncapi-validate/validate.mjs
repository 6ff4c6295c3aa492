// Validates an AsyncAPI document with the reference parser (@asyncapi/parser) and prints a JSON
// report: {"valid": bool, "errors": [...], "warnings": [...], "channels": {...}, "messages": [...]}.
// Exit code 0 when valid, 1 when the parser reports errors, 2 on usage or I/O problems.
// Usage: node validate.mjs path/to/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs ASYNCAPI_FILE');
  process.exit(2);
}

let text;
try {
  text = await readFile(path, 'utf8');
} catch (err) {
  console.error(`cannot read ${path}: ${err.message}`);
  process.exit(2);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: path });
const describe = (d) => ({ code: d.code, message: d.message, path: (d.path || []).join('.') });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(describe);
const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(describe);

// What the parser understood, so the Python test can check the document's content too.
const channels = {};
const messages = [];
if (document) {
  for (const channel of document.channels().all()) {
    channels[channel.id()] = {
      address: channel.address(),
      messages: channel.messages().all().map((m) => m.id()),
    };
  }
  for (const message of document.allMessages().all()) {
    messages.push(message.id());
  }
}

console.log(JSON.stringify({ valid: document !== undefined && errors.length === 0, errors, warnings, channels, messages }, null, 2));
process.exit(document !== undefined && errors.length === 0 ? 0 : 1);
