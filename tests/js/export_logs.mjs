// Export vfo log records through the OpenTelemetry JS SDK's OTLP/HTTP log exporter.
//
// Usage: node export_logs.mjs <json|protobuf> <logs URL> < records.json
// records.json: {"service": "...", "records": [{"timeUnixNano": "...", "eventName": "...",
//   "body": "...", "attributes": {"key": value, ...}}]}; integer values that must be OTLP
//   intValue arrive as {"int": "123"}, and are passed as numbers (exact below 2^53).
// Prints one JSON line: {"code": <ExportResultCode>, "error": ...} from the exporter's result.
import { readFileSync } from "node:fs";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { LoggerProvider, SimpleLogRecordProcessor } from "@opentelemetry/sdk-logs";
import { OTLPLogExporter as JsonExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as ProtoExporter } from "@opentelemetry/exporter-logs-otlp-proto";

const [encoding, url] = process.argv.slice(2);
const input = JSON.parse(readFileSync(0, "utf8"));
const Exporter = encoding === "protobuf" ? ProtoExporter : JsonExporter;
const exporter = new Exporter({ url });

let result = null;
const original = exporter.export.bind(exporter);
exporter.export = (logs, done) => original(logs, (r) => { result = r; done(r); });

const provider = new LoggerProvider({
  resource: resourceFromAttributes({ "service.name": input.service }),
  processors: [new SimpleLogRecordProcessor(exporter)],
});
const logger = provider.getLogger("vfo-js-test");
for (const r of input.records) {
  const attributes = {};
  for (const [k, v] of Object.entries(r.attributes)) {
    attributes[k] = v !== null && typeof v === "object" && "int" in v ? Number(v.int) : v;
  }
  const ns = BigInt(r.timeUnixNano);
  logger.emit({
    timestamp: [Number(ns / 1000000000n), Number(ns % 1000000000n)],
    eventName: r.eventName,
    severityNumber: 9,
    body: r.body,
    attributes,
  });
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ code: result ? result.code : null, error: result && result.error ? String(result.error) : null }));
