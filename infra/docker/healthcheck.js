// Exit 0 when a TCP connection to 127.0.0.1:<port> (default 4222) opens within 2 s: the container's health check.
const port = Number(process.argv[2] ?? 4222);
const s = require('node:net').connect(port, '127.0.0.1');
const t = setTimeout(() => process.exit(1), 2000);
s.on('connect', () => {
  clearTimeout(t);
  s.destroy();
  process.exit(0);
});
s.on('error', () => process.exit(1));
