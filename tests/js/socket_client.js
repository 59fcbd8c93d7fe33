// A socket.io-client 4.x connection driven by a test over stdin/stdout (JSON lines).
//
//   node socket_client.js <url> <token or -> <namespace>...
//
// Prints {ns, event, data} for connect / connect_error / disconnect and every
// event received. Reads commands, one JSON object a line:
//   {"id": 1, "ns": "/dashboard", "emit": "watch_course", "args": [{...}]}
//      -> prints {ns, ack: 1, data} with the acknowledgement (or {timeout: true})
//   {"close": true} -> disconnects and exits
// Run with NODE_PATH pointing at lms/assets/node_modules.
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const [url, token, ...namespaces] = process.argv.slice(2);
const sockets = {};

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

for (const ns of namespaces) {
  const socket = io(url + (ns === "/" ? "" : ns), {
    auth: token === "-" ? {} : { token },
    transports: ["websocket"],
    reconnection: false,
  });
  socket.on("connect", () => out({ ns, event: "connect", data: socket.id }));
  socket.on("connect_error", (err) => out({ ns, event: "connect_error", data: err.message }));
  socket.on("disconnect", (reason) => out({ ns, event: "disconnect", data: reason }));
  socket.onAny((event, ...args) => out({ ns, event, data: args.length === 1 ? args[0] : args }));
  sockets[ns] = socket;
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.close) {
    Object.values(sockets).forEach((socket) => socket.close());
    process.exit(0);
  }
  sockets[command.ns]
    .timeout(10000)
    .emit(command.emit, ...(command.args || []), (err, ack) =>
      out({ ns: command.ns, ack: command.id, data: err ? { timeout: true } : ack }),
    );
});
