// Validates Kubernetes objects (a multi-document YAML on stdin, e.g. `kubectl kustomize` output)
// offline against the Kubernetes JSON schemas shipped in the npm package kubernetes-models.
// Exits 1 naming every invalid or unknown object.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const text = readFileSync(0, "utf8");
let failures = 0;
let count = 0;
for (const doc of parseAllDocuments(text)) {
  const obj = doc.toJS();
  if (!obj) continue;
  count++;
  const { apiVersion, kind } = obj;
  const name = `${kind}/${obj.metadata?.name}`;
  const group = apiVersion.includes("/") ? apiVersion : `v1`;
  const path = apiVersion.includes("/") ? `kubernetes-models/${group}/${kind}` : `kubernetes-models/v1/${kind}`;
  let Model;
  try {
    Model = (await import(path))[kind];
  } catch (e) {
    console.error(`UNKNOWN ${name}: no schema for ${apiVersion} ${kind}`);
    failures++;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    console.error(`INVALID ${name}: ${e.message}`);
    failures++;
  }
}
console.log(`${count} objects checked, ${failures} invalid`);
process.exit(failures === 0 && count > 0 ? 0 : 1);
