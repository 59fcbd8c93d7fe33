// A live-quiz player on the official JavaScript client (socket.io-client from lms/assets).
//
//   node tests/js/live_player.js <base url> <pin> <nickname> <answer policy>
//
// Joins, answers every question with the first option (or the list of the
// first option for multiple choice, "x" for short answers), and prints one
// JSON line per thing that happens: {"ack": ...} for acknowledgements and
// {"event": name, "data": ...} for server events. Exits after session_ended.
"use strict";
const { io } = require("socket.io-client"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [base, pin, nickname] = process.argv.slice(2);
const socket = io(base + "/live", { transports: ["websocket"], reconnection: false });
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

socket.onAny((event, data) => {
  print({ event, data });
  if (event === "question_started") {
    const first = data.options.length ? data.options[0].id : "x";
    const answer = data.question_type === "multiple_choice" ? [first] : first;
    socket.emit("submit_answer", { question_index: data.index, answer }, (ack) => print({ ack: "submit_answer", data: ack }));
  }
  if (event === "final_result") {
    socket.close();
    process.exit(0);
  }
});
socket.on("connect", () => {
  socket.emit("clock", {}, (ack) => print({ ack: "clock", data: ack }));
  socket.emit("join_session", { pin, nickname }, (ack) => print({ ack: "join_session", data: ack }));
});
socket.on("connect_error", (err) => {
  print({ error: err.message });
  process.exit(2);
});
setTimeout(() => process.exit(3), 120000);
