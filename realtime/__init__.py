"""The live side: Socket.IO server, namespaces, live-session actors, fan-out, job emitter."""
