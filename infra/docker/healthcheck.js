// The container's health check. `node /healthcheck.js PORT`: exit 0 when a TCP connection to 127.0.0.1:PORT opens
// within 2 s. `node /healthcheck.js PORT /healthz`: exit 0 when GET http://127.0.0.1:PORT/healthz answers 200 within
// 2 s (nats-server's monitoring port: it answers ok once the server accepts clients).
const port = Number(process.argv[2] ?? 4222);
const path = process.argv[3];
const t = setTimeout(() => process.exit(1), 2000);
if (path) {
  require('node:http')
    .get({ host: '127.0.0.1', port, path }, (res) => {
      res.resume();
      process.exit(res.statusCode === 200 ? 0 : 1);
    })
    .on('error', () => process.exit(1));
} else {
  const s = require('node:net').connect(port, '127.0.0.1');
  s.on('connect', () => {
    clearTimeout(t);
    s.destroy();
    process.exit(0);
  });
  s.on('error', () => process.exit(1));
}
