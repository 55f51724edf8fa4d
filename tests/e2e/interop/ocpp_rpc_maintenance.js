// An independent OCPP client (ocpp-rpc, strict mode) answers the central system's
// ReserveNow (1.6: then starts a transaction on the reservation) or UpdateFirmware
// (2.0.1: downloads the image and reports each step), and prints what it saw as JSON.
// usage: node ocpp_rpc_maintenance.js ENDPOINT IDENTITY PROTOCOL ID_TAG
'use strict';
const { RPCClient } = require('ocpp-rpc');

const [endpoint, identity, protocol, idTag] = process.argv.slice(2);
const failures = [];
const log = { protocol, responses: {}, csmsCalls: [], statuses: [] };

async function main() {
  const cli = new RPCClient({ endpoint, identity, protocols: [protocol], strictMode: true,
    reconnect: false });
  cli.on('strictValidationFailure', (e) => failures.push(String(e.error && e.error.message)));
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const r = log.responses;
  await cli.connect();
  log.negotiated = cli.protocol;
  // each version's handler is registered in its branch: the other version never sees it
  if (protocol === 'ocpp1.6') {
    cli.handle('ReserveNow', ({ params }) => {
      log.csmsCalls.push({ method: 'ReserveNow', params });
      setTimeout(async () => {
        try {
          r.status = await cli.call('StatusNotification', { connectorId: params.connectorId, errorCode: 'NoError', status: 'Reserved' });
          r.start = await cli.call('StartTransaction', { connectorId: params.connectorId, idTag: params.idTag,
            meterStart: 1000, timestamp: new Date().toISOString(), reservationId: params.reservationId });
        } catch (err) { log.error = String(err); }
        finish();
      }, 50);
      return { status: 'Accepted' };
    });
    r.boot = await cli.call('BootNotification', { chargePointVendor: 'interop', chargePointModel: 'ocpp-rpc' });
  } else {
    cli.handle('UpdateFirmware', ({ params }) => {
      log.csmsCalls.push({ method: 'UpdateFirmware', params });
      setTimeout(async () => {
        const requestId = params.requestId;
        const say = async (status) => {
          log.statuses.push(status);
          await cli.call('FirmwareStatusNotification', { status, requestId });
        };
        try {
          await say('Downloading');
          const response = await fetch(params.firmware.location);
          log.downloadStatus = response.status;
          log.downloadBytes = (await response.arrayBuffer()).byteLength;
          await say('Downloaded');
          await say('Installing');
          await say('Installed');
        } catch (err) { log.error = String(err); }
        finish();
      }, 50);
      return { status: 'Accepted' };
    });
    r.boot = await cli.call('BootNotification', { chargingStation: { vendorName: 'interop', model: 'ocpp-rpc' }, reason: 'PowerUp' });
  }
  console.error('READY');  // the test now sends the operator's command
  let timer;
  await Promise.race([finished, new Promise((resolve) => { timer = setTimeout(resolve, 15000); })]);
  clearTimeout(timer);
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
