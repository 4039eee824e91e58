// Runs vue-tsc with this package's TypeScript (5.9.3) rather than whichever
// TypeScript npm hoisted to clients/node_modules: vue-tsc resolves
// "typescript/lib/tsc" from its own directory, and the workspace root holds
// the 5.4.5 that @bufbuild/protoplugin pins, which vue-tsc 3 cannot drive.
// Arguments are vue-tsc's (e.g. --noEmit -p tsconfig.json).
require("vue-tsc").run(require.resolve("typescript/lib/tsc", { paths: [__dirname] }));
