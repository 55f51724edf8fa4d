// A peer for the throughput benchmark: the ocpp-rpc server (Node) in strict mode,
// answering the calls the load generator sends, for OCPP 1.6 and 2.0.1. It stores
// nothing (not durable), as a user's quick server on this library would.
// usage: NODE_PATH=.tools/node_modules node ocpp_rpc_server.js PORT [WORKERS]
// WORKERS > 1: that many processes share the port through Node's cluster module (the
// primary accepts and hands each connection to a worker, which alone holds it), as
// csms serve --workers does with SO_REUSEPORT: one process holds at most ulimit -n sockets.
'use strict';
const cluster = require('node:cluster');
const { RPCServer } = require('ocpp-rpc');

const port = Number(process.argv[2] || 9000);
const workers = Number(process.argv[3] || 1);
if (workers > 1 && cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('listening', () => {
      if (++listening === workers) process.stdout.write(`listening ${port}\n`);
    });
  }
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  return;
}
let nextTransaction = 1;
const now = () => new Date().toISOString();

const V16 = {
  BootNotification: () => ({ status: 'Accepted', interval: 300, currentTime: now() }),
  Heartbeat: () => ({ currentTime: now() }),
  StatusNotification: () => ({}),
  Authorize: () => ({ idTagInfo: { status: 'Accepted' } }),
  StartTransaction: () => ({ transactionId: nextTransaction++, idTagInfo: { status: 'Accepted' } }),
  MeterValues: () => ({}),
  StopTransaction: () => ({}),
};

const V201 = {
  BootNotification: () => ({ status: 'Accepted', interval: 300, currentTime: now() }),
  Heartbeat: () => ({ currentTime: now() }),
  StatusNotification: () => ({}),
  Authorize: () => ({ idTokenInfo: { status: 'Accepted' } }),
  TransactionEvent: ({ params }) => (params.idToken ? { idTokenInfo: { status: 'Accepted' } } : {}),
  MeterValues: () => ({}),
};

const server = new RPCServer({ protocols: ['ocpp1.6', 'ocpp2.0.1'], strictMode: true });
server.auth((accept) => accept());
server.on('client', (client) => {
  const handlers = client.protocol === 'ocpp2.0.1' ? V201 : V16;
  for (const [method, handler] of Object.entries(handlers)) {
    client.handle(method, handler);
  }
});
server.listen(port, '127.0.0.1').then(() => {
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.close({ force: true }).then(() => process.exit(0)));
