// Stand-in for @matrix-org/matrix-sdk-crypto-nodejs (see package.json): every export is a class
// that throws when used, so an accidental use of end-to-end encryption fails loudly.
"use strict";
module.exports = new Proxy({}, {
  get(_target, name) {
    if (name === "__esModule" || typeof name === "symbol") return undefined;
    return class {
      constructor() {
        throw new Error(`matrix-sdk-crypto-nodejs stub: ${String(name)} is not available in the lattice e2e bridge`);
      }
    };
  },
});
