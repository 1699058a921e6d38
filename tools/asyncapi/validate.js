// Validate AsyncAPI documents with the reference parser (@asyncapi/parser).
// Usage: node tools/asyncapi/validate.js FILE... ; prints one JSON report per file on
// stdout ({file, version, errors, warnings}) and exits 1 when any document has an error.
'use strict';
const fs = require('fs');
const { Parser } = require('@asyncapi/parser');

async function main(files) {
  const parser = new Parser();
  let failed = false;
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const { document, diagnostics } = await parser.parse(text, { source: file });
    const pick = (severity) => diagnostics.filter((d) => d.severity === severity)
      .map((d) => ({ code: d.code, message: d.message, path: d.path.join('/') }));
    const errors = pick(0);
    failed = failed || errors.length > 0 || !document;
    console.log(JSON.stringify({ file, version: document ? document.version() : null,
                                 errors, warnings: pick(1) }));
  }
  process.exitCode = failed ? 1 : 0;
}

main(process.argv.slice(2)).catch((err) => { console.error(err); process.exitCode = 2; });
