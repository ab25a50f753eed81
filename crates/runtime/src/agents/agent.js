// airlock's in-sandbox agent for pre-started Node sandboxes: waits for exactly one frame on
// the private control descriptor 3 (8-byte big-endian length, then the code), closes it, and
// runs the code as the main module, as `node /airlock/main.js` would.
'use strict';
const fs = require('fs');
const Module = require('module');

function readExactly(fd, n) {
  const buf = Buffer.alloc(n);
  let off = 0;
  while (off < n) {
    let got;
    try {
      got = fs.readSync(fd, buf, off, n - off, null);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      throw e;
    }
    if (got === 0) process.exit(125); // the supervisor went away before sending code
    off += got;
  }
  return buf;
}

fs.writeSync(3, 'R'); // ready: the interpreter is up and waiting for its code
const size = Number(readExactly(3, 8).readBigUInt64BE(0));
const code = readExactly(3, size).toString('utf8');
fs.closeSync(3);
const path = '/airlock/main.js';
const main = new Module(path, null);
main.filename = path;
main.paths = Module._nodeModulePaths('/airlock');
process.argv[1] = path;
process.mainModule = main;
require.main = main;
main.loaded = true;
main._compile(code, path);
