// Starts kinesalite bound to 127.0.0.1 only (its own cli listens on every interface).
// Usage: node kinesalite_launcher.js PORT [LEVELDB_PATH]
const kinesalite = require("kinesalite");
const port = parseInt(process.argv[2], 10);
const options = { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 };
if (process.argv[3]) options.path = process.argv[3];
const server = kinesalite(options).listen(port, "127.0.0.1", () => {
  console.log("kinesalite listening on 127.0.0.1:" + server.address().port);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
process.on("SIGINT", () => process.exit(0));
