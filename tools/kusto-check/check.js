#!/usr/bin/env node
/*
 * Parse AND semantically analyze KQL queries with Microsoft's Kusto.Language
 * (the Bridge.NET build published as @kusto/language-service-next).
 *
 * stdin  (one JSON document):
 *   {
 *     "schema":   {"TableName": {"Column": "kustoType", ...}, ...},
 *     "functions": {"Name": "body"},  // optional: stored functions without
 *                                   // parameters (a Log Analytics workspace's
 *                                   // saved functions), called as Name()
 *     "queries":  ["...", "..."],
 *     "database": "LogAnalytics",   // optional, default database name
 *     "analyzers": false            // optional, also run the editor's style
 *                                   // analyzers (their findings are warnings)
 *   }
 * stdout (JSON):
 *   [{"index": 0, "diagnostics": [{"severity": "Error", "code": "KS142",
 *      "message": "...", "start": 12, "length": 5, "source": "compiler"}]}, ...]
 *
 * Every diagnostic the compiler reports is listed with its own severity
 * ("Error", "Warning", "Suggestion", ...); the caller decides what to fail on.
 * A problem with the input itself (bad JSON, unknown column type) exits 2 with a
 * message on stderr; an exception inside the analyzer for one query is reported
 * as an Error diagnostic with code "CHECKER" for that query.
 */
"use strict";

const path = require("path");

function loadKusto() {
    // bridge.js detects CommonJS and installs `Bridge` and `System` on `global`;
    // Kusto.Language.Bridge.js then registers the `Kusto` namespace on `global`.
    // Neither file exports anything useful, so both are loaded for side effects.
    const pkgDir = path.dirname(
        require.resolve("@kusto/language-service-next/package.json", { paths: [__dirname] })
    );
    require(path.join(pkgDir, "bridge.js"));
    require(path.join(pkgDir, "Kusto.Language.Bridge.js"));
    if (typeof global.Kusto === "undefined" || !global.Kusto.Language) {
        throw new Error("@kusto/language-service-next loaded but global Kusto.Language is missing");
    }
    return global.Kusto.Language;
}

function readStdin() {
    return require("fs").readFileSync(0, "utf8");
}

/** Build a GlobalState holding one cluster with one database with the given tables and functions. */
function buildGlobals(K, schema, functions, databaseName) {
    const S = K.Symbols;
    const tables = [];
    for (const [tableName, columns] of Object.entries(schema || {})) {
        const cols = [];
        for (const [columnName, typeName] of Object.entries(columns || {})) {
            const type = S.ScalarTypes.GetSymbol(String(typeName));
            if (type == null) {
                throw new Error(`unknown Kusto type '${typeName}' for ${tableName}.${columnName}`);
            }
            cols.push(new S.ColumnSymbol(columnName, type));
        }
        tables.push(new S.TableSymbol.$ctor4(tableName, cols));
    }
    for (const [functionName, body] of Object.entries(functions || {})) {
        // FunctionSymbol(name, parameterList, body, description): the body is analyzed where it is called.
        tables.push(new S.FunctionSymbol.$ctor16(functionName, "()", `{ ${String(body)} }`, null));
    }
    const database = new S.DatabaseSymbol.ctor(databaseName, tables);
    const cluster = new S.ClusterSymbol.ctor("kusto-check", [database]);
    // GlobalState.Default carries the full built-in function/aggregate/operator set
    // of the Engine server kind (the library has no Log Analytics-specific kind).
    return K.GlobalState.Default.WithCluster(cluster).WithDatabase(database);
}

function convert(list, source) {
    const out = [];
    if (list == null) {
        return out;
    }
    const n = list.Count;
    for (let i = 0; i < n; i++) {
        const d = list.getItem(i);
        out.push({
            severity: d.Severity,
            code: d.Code,
            category: d.Category,
            message: d.Message,
            start: d.HasLocation ? d.Start : 0,
            length: d.HasLocation ? d.Length : 0,
            source: source,
        });
    }
    return out;
}

function checkOne(K, query, globals, analyzers) {
    const code = K.KustoCode.ParseAndAnalyze(query, globals);
    const diagnostics = convert(code.GetDiagnostics(), "compiler");
    if (analyzers) {
        const service = new K.Editor.KustoCodeService.ctor(code);
        for (const d of convert(service.GetAnalyzerDiagnostics(true), "analyzer")) {
            if (d.severity === "Error") {
                // Analyzer findings are advice, never errors of the query itself.
                d.severity = "Warning";
            }
            diagnostics.push(d);
        }
    }
    return diagnostics;
}

function main() {
    let request;
    try {
        request = JSON.parse(readStdin());
    } catch (err) {
        process.stderr.write(`kusto-check: stdin is not one JSON document: ${err.message}\n`);
        return 2;
    }
    if (request == null || !Array.isArray(request.queries)) {
        process.stderr.write('kusto-check: expected {"schema": {...}, "queries": [...]}\n');
        return 2;
    }
    let K;
    try {
        K = loadKusto();
    } catch (err) {
        process.stderr.write(`kusto-check: cannot load Kusto.Language: ${err && err.stack ? err.stack : err}\n`);
        return 2;
    }
    let globals;
    try {
        globals = buildGlobals(K, request.schema, request.functions, request.database || "LogAnalytics");
    } catch (err) {
        process.stderr.write(`kusto-check: bad schema: ${err && err.message ? err.message : err}\n`);
        return 2;
    }
    const analyzers = Boolean(request.analyzers);
    const results = request.queries.map((query, index) => {
        let diagnostics;
        try {
            diagnostics = checkOne(K, String(query), globals, analyzers);
        } catch (err) {
            diagnostics = [{
                severity: "Error",
                code: "CHECKER",
                category: "Checker",
                message: `Kusto.Language threw while analyzing: ${err && err.message ? err.message : err}`,
                start: 0,
                length: 0,
                source: "checker",
            }];
        }
        return { index: index, diagnostics: diagnostics };
    });
    process.stdout.write(JSON.stringify(results));
    return 0;
}

process.exitCode = main();
