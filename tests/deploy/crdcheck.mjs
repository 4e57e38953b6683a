// Validates KEDA and Prometheus Operator objects (a JSON array on stdin) with the validators
// that the npm @kubernetes-models packages generate from the projects' own CRD schemas: field
// types, enums, required fields. Usage: node crdcheck.mjs NODE_MODULES < objects.json
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGES = {
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};
const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const obj of objects) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const [group, version] = String(obj.apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg) {
    console.log(`ERROR ${name}: no CRD validator for ${obj.apiVersion}`);
    bad++;
    continue;
  }
  const pkgVersion = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
  let model;
  try {
    model = await import(pathToFileURL(join(modules, pkg, group, version, `${obj.kind}.js`)).href);
  } catch (e) {
    console.log(`ERROR ${name}: ${pkg} has no ${obj.apiVersion} ${obj.kind}: ${e.message}`);
    bad++;
    continue;
  }
  try {
    new model[obj.kind](obj).validate();
    console.log(`ok   ${name} valid for the ${obj.apiVersion} CRD schema (${pkg} ${pkgVersion})`);
  } catch (e) {
    console.log(`ERROR ${name}: ${obj.apiVersion} CRD schema (${pkg} ${pkgVersion}): ${e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
