// Validates FHIR R4 JSON resources (files named on the command line) against the official R4
// JSON schema (fhir.schema.json, shipped by @asymmetrik/fhir-json-schema-validator), then checks
// the elements R4 requires that the schema leaves to profiles: Bundle.type, ServiceRequest
// status/intent/subject, Task status/intent, and that no array is empty. Prints every problem
// with its file; exits 1 when there is one, 2 when it cannot run.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
let Validator;
try {
  Validator = require("@asymmetrik/fhir-json-schema-validator");
} catch (e) {
  console.error("fhir-validate: npm packages missing (run ./scripts/setup):", e.message);
  process.exit(2);
}
const validator = new Validator();

const required = {
  Bundle: ["type"],
  ServiceRequest: ["status", "intent", "subject"],
  Task: ["status", "intent"],
};

function emptyArrays(value, path, out) {
  if (Array.isArray(value)) {
    if (value.length === 0) out.push(`${path}: an empty array (FHIR forbids them)`);
    value.forEach((v, i) => emptyArrays(v, `${path}[${i}]`, out));
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) emptyArrays(v, `${path}.${k}`, out);
  }
}

// Each resource on its own (a Bundle without its entries' resources, then each of those), so
// that a problem is reported once at its own path, not as every alternative of the schema's oneOf.
function check(resource, path, out) {
  const shallow = resource.entry
    ? { ...resource, entry: resource.entry.map(({ resource: _r, ...rest }) => rest) }
    : resource;
  for (const e of validator.validate(shallow)) {
    out.push(`${path}${e.dataPath ?? e.instancePath ?? ""}: ${e.message}`);
  }
  for (const field of required[resource.resourceType] ?? []) {
    if (resource[field] === undefined) out.push(`${path}.${field}: required`);
  }
  for (const [i, entry] of (resource.entry ?? []).entries()) {
    if (entry.resource) check(entry.resource, `${path}.entry[${i}].resource`, out);
  }
}

let failures = 0;
const files = process.argv.slice(2);
for (const file of files) {
  const problems = [];
  let resource;
  try {
    resource = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    problems.push(`not JSON: ${e.message}`);
  }
  if (resource) {
    check(resource, resource.resourceType ?? "?", problems);
    emptyArrays(resource, resource.resourceType ?? "?", problems);
  }
  for (const p of problems) console.log(`${file}: ${p}`);
  failures += problems.length ? 1 : 0;
}
console.log(`fhir-validate: ${files.length - failures} of ${files.length} valid FHIR R4`);
process.exit(failures ? 1 : 0);
