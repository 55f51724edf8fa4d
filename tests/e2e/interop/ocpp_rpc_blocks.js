// An independent OCPP client (ocpp-rpc, strict mode) exercises a sample of each functional
// block (2.0.1) / feature profile (1.6) that the other scripts leave out: it answers the
// central system's local list, trigger, reservation, certificate and data transfer CALLs
// and sends firmware/diagnostics status, meter values, a reservation update and a data
// transfer; on 1.6 it also charges once and takes the FinalCost DataTransfer the central
// system sends by itself at the end; prints what it saw as JSON.
// usage: node ocpp_rpc_blocks.js ENDPOINT IDENTITY PROTOCOL ID_TAG
'use strict';
const { RPCClient } = require('ocpp-rpc');

const [endpoint, identity, protocol, idTag] = process.argv.slice(2);
const failures = [];
const log = { protocol, responses: {}, csmsCalls: [] };

function ts(minutes) {
  return new Date(Date.UTC(2026, 2, 1, 10, minutes, 0)).toISOString();
}

async function main() {
  const cli = new RPCClient({ endpoint, identity, protocols: [protocol], strictMode: true,
    reconnect: false });
  cli.on('strictValidationFailure', (e) => failures.push(String(e.error && e.error.message)));
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  const r = log.responses;
  const answer = (method, result) => cli.handle(method, ({ params }) => {
    log.csmsCalls.push({ method, params });
    return result(params);
  });
  answer('Reset', () => { finished(); return { status: 'Accepted' }; });
  await cli.connect();
  log.negotiated = cli.protocol;
  if (protocol === 'ocpp1.6') {
    answer('GetLocalListVersion', () => ({ listVersion: 3 }));
    answer('TriggerMessage', (p) => {
      setTimeout(async () => { r.triggered = await cli.call('Heartbeat', {}); }, 20);
      return { status: p.requestedMessage === 'Heartbeat' ? 'Accepted' : 'Rejected' };
    });
    r.boot = await cli.call('BootNotification', { chargePointVendor: 'interop', chargePointModel: 'ocpp-rpc' });
    // FirmwareManagement: status reports with no request outstanding (1.6 §6.17, §6.27)
    r.diagnostics = await cli.call('DiagnosticsStatusNotification', { status: 'Idle' });
    r.firmware = await cli.call('FirmwareStatusNotification', { status: 'Idle' });
    // a session at a station marked for the running cost: FinalCost follows the stop
    let finalSeen;
    const final = new Promise((resolve) => { finalSeen = resolve; });
    answer('DataTransfer', () => { finalSeen(); return { status: 'Accepted' }; });
    r.start = await cli.call('StartTransaction', { connectorId: 1, idTag, meterStart: 1000, timestamp: ts(0) });
    r.stop = await cli.call('StopTransaction', { transactionId: r.start.transactionId, idTag, meterStop: 6500,
      timestamp: ts(20), reason: 'Local' });
    let waited;
    await Promise.race([final, new Promise((resolve) => { waited = setTimeout(resolve, 10000); })]);
    clearTimeout(waited);
  } else {
    answer('GetLocalListVersion', () => ({ versionNumber: 3 }));
    answer('TriggerMessage', (p) => {
      setTimeout(async () => { r.triggered = await cli.call('Heartbeat', {}); }, 20);
      return { status: p.requestedMessage === 'Heartbeat' ? 'Accepted' : 'Rejected' };
    });
    answer('ReserveNow', () => ({ status: 'Accepted' }));
    // refused (the reservation stays), then reported expired (H05), in that order
    answer('CancelReservation', (p) => {
      setTimeout(async () => {
        r.reservationUpdate = await cli.call('ReservationStatusUpdate', {
          reservationId: p.reservationId, reservationUpdateStatus: 'Expired' });
      }, 20);
      return { status: 'Rejected' };
    });
    answer('GetInstalledCertificateIds', () => ({ status: 'NotFound' }));
    answer('DataTransfer', () => ({ status: 'UnknownVendorId' }));
    r.boot = await cli.call('BootNotification', { chargingStation: { vendorName: 'interop', model: 'ocpp-rpc' }, reason: 'PowerUp' });
    r.meter = await cli.call('MeterValues', { evseId: 1, meterValue: [{ timestamp: ts(5), sampledValue: [
      { value: 230.4, measurand: 'Voltage', phase: 'L1-N', unitOfMeasure: { unit: 'V' } },
      { value: 12345.6, measurand: 'Energy.Active.Import.Register', context: 'Sample.Clock', unitOfMeasure: { unit: 'Wh' } }] }] });
    r.dataTransfer = await cli.call('DataTransfer', { vendorId: 'org.example.interop', messageId: 'hello', data: { n: 1 } });
  }
  console.error('READY');  // the test now sends its commands, Reset last
  let timer;
  await Promise.race([done, new Promise((resolve) => { timer = setTimeout(resolve, 20000); })]);
  clearTimeout(timer);
  await new Promise((resolve) => setTimeout(resolve, 50));  // a triggered message's answer
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
