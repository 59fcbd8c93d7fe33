// A live-quiz player of a team game on the official JavaScript client (socket.io-client from lms/assets).
//
//   node tests/js/live_team_player.js <base url> <pin> <nickname> <team or "-"> <answer>
//
// Joins (picking the team, or leaving the choice to the server with "-"),
// answers every question with <answer>, and prints one JSON line per thing
// that happens: {"ack": ...} for acknowledgements and {"event": name, "data": ...}
// for server events. Exits after final_result.
"use strict";
const { io } = require("socket.io-client"); // from lms/assets/node_modules, through NODE_PATH (tests/node.py)

const [base, pin, nickname, team, answer] = process.argv.slice(2);
const socket = io(base + "/live", { transports: ["websocket"], reconnection: false });
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

socket.onAny((event, data) => {
  print({ event, data });
  if (event === "question_started") {
    socket.emit("submit_answer", { question_index: data.index, answer }, (ack) => print({ ack: "submit_answer", data: ack }));
  }
  if (event === "final_result") {
    socket.close();
    process.exit(0);
  }
});
socket.on("connect", () => {
  const join = team === "-" ? { pin, nickname } : { pin, nickname, team: Number(team) };
  socket.emit("join_session", join, (ack) => print({ ack: "join_session", data: ack }));
});
socket.on("connect_error", (err) => {
  print({ error: err.message });
  process.exit(2);
});
setTimeout(() => process.exit(3), 120000);
