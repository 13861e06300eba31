// `node dist/src/emit-json-schema.js OUT`: writes the config file's JSON Schema to OUT (stdout
// without OUT). The Helm chart build calls it to make values.schema.json.
import { configJsonSchema, writeConfigJsonSchema } from './json-schema.js';

const args = process.argv.slice(2);
if (args.length > 1 || args[0]?.startsWith('-')) {
  process.stderr.write('usage: emit-json-schema [OUT]\n');
  process.exitCode = 2;
} else if (args[0] === undefined) {
  process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
} else {
  writeConfigJsonSchema(args[0]);
}
