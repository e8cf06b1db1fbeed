// Validates docs/asyncapi.yaml with AsyncAPI's own parser (the spec's JSON
// Schemas and its Spectral rules): exit 1 on any error. The parser is
// installed by scripts/deps.sh into $ASYNCAPI_PARSER_DIR.
//   node scripts/asyncapi-check.mjs docs/asyncapi.yaml
import { createRequire } from 'node:module';

if (!process.env.ASYNCAPI_PARSER_DIR) {
  console.error('ASYNCAPI_PARSER_DIR is not set (scripts/lib.sh sets it; scripts/deps.sh installs the parser there)');
  process.exit(2);
}
const require = createRequire(`${process.env.ASYNCAPI_PARSER_DIR}/`);
const { Parser, fromFile } = require('@asyncapi/parser');

const path = process.argv[2];
const { document, diagnostics } = await fromFile(new Parser(), path).parse();
// Spectral's severities: 0 error, 1 warning, 2 information, 3 hint.
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics.filter((d) => d.severity <= 1)) {
  console.error(`${path}: ${d.severity === 0 ? 'error' : 'warning'} ${d.code} at ${d.path.join('.')}: ${d.message}`);
}
if (!document || errors.length > 0) {
  console.error(`${path}: not a valid AsyncAPI document`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.messages().length} messages`);
