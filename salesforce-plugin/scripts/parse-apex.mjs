#!/usr/bin/env node
// Parses Apex classes (.cls) and triggers (.trigger) with @apexdevtools/apex-parser, the ANTLR
// grammar the Apex Dev Tools use, and prints one JSON report on stdout:
//
//   {"parser": "@apexdevtools/apex-parser <version>",
//    "files": [{"path", "unit": "class"|"trigger", "errors": [{"line", "column", "message"}],
//               "tree"?: <parse tree>}]}
//
// Usage: node scripts/parse-apex.mjs [--tree] <file or directory>...
// Directories are searched recursively (node_modules skipped). With --tree every file also
// carries its parse tree: a rule node is {"rule": "<ANTLR context without 'Context'>", "line",
// "children": [...]}, a token is {"token": "<text>", "line"}, so checks written in another
// language can read declarations and expressions without a second Apex grammar.
// Exit status: 0 when every file parsed, 1 when any file has a syntax error, 2 on bad usage.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ApexErrorListener, ApexParserFactory } from "@apexdevtools/apex-parser";

const APEX_SUFFIXES = new Map([
  [".cls", "class"],
  [".trigger", "trigger"],
]);

class CollectingErrorListener extends ApexErrorListener {
  constructor() {
    super();
    this.errors = [];
  }

  apexSyntaxError(line, column, message) {
    this.errors.push({ line, column, message });
  }
}

function parserVersion() {
  // The package exports no ./package.json, so find it above the module node resolved.
  let dir = path.dirname(fileURLToPath(import.meta.resolve("@apexdevtools/apex-parser")));
  while (!existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
  const manifest = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
  return `${manifest.name} ${manifest.version}`;
}

function apexFilesUnder(target) {
  const stats = statSync(target, { throwIfNoEntry: false });
  if (!stats) {
    throw new UsageError(`no such file or directory: ${target}`);
  }
  if (stats.isFile()) {
    if (!APEX_SUFFIXES.has(path.extname(target))) {
      throw new UsageError(`not an Apex class or trigger (.cls, .trigger): ${target}`);
    }
    return [target];
  }
  const found = [];
  for (const entry of readdirSync(target, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const child = path.join(target, entry.name);
    if (entry.isDirectory()) found.push(...apexFilesUnder(child));
    else if (APEX_SUFFIXES.has(path.extname(entry.name))) found.push(child);
  }
  return found.sort();
}

function treeOf(node, parser) {
  if (node.symbol !== undefined) {
    return { token: node.getText(), line: node.symbol.line };
  }
  const rule = node.constructor.name.replace(/Context$/, "");
  const children = (node.children ?? []).map((child) => treeOf(child, parser));
  return { rule, line: node.start ? node.start.line : 0, children };
}

function parseFile(file, withTree) {
  const unit = APEX_SUFFIXES.get(path.extname(file));
  const listener = new CollectingErrorListener();
  const source = readFileSync(file, "utf8");
  const { parser } = ApexParserFactory.createLexerAndParser(source, listener);
  const root = unit === "trigger" ? parser.triggerUnit() : parser.compilationUnit();
  const report = { path: file, unit, errors: listener.errors };
  if (withTree) report.tree = treeOf(root, parser);
  return report;
}

class UsageError extends Error {}

function main(argv) {
  const withTree = argv.includes("--tree");
  const targets = argv.filter((arg) => arg !== "--tree");
  if (targets.length === 0 || targets.some((arg) => arg.startsWith("--"))) {
    throw new UsageError("usage: node scripts/parse-apex.mjs [--tree] <file or directory>...");
  }
  const files = targets.flatMap(apexFilesUnder);
  if (files.length === 0) {
    throw new UsageError(`no .cls or .trigger files under ${targets.join(", ")}`);
  }
  const reports = files.map((file) => parseFile(file, withTree));
  process.stdout.write(JSON.stringify({ parser: parserVersion(), files: reports }));
  process.stdout.write("\n");
  return reports.some((report) => report.errors.length > 0) ? 1 : 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  process.stderr.write(`parse-apex: ${error.message}\n`);
  process.exitCode = 2;
}
