// An independent OCPP client (ocpp-rpc, strict mode) runs one full charging
// session against the central system and prints what it saw as JSON.
// usage: node ocpp_rpc_session.js ENDPOINT IDENTITY PROTOCOL ID_TAG
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
  let gotReset;
  const resetSeen = new Promise((resolve) => { gotReset = resolve; });
  cli.handle('Reset', ({ params }) => {
    log.csmsCalls.push({ method: 'Reset', params });
    gotReset();
    return { status: 'Accepted' };
  });
  await cli.connect();
  log.negotiated = cli.protocol;
  const r = log.responses;
  if (protocol === 'ocpp1.6') {
    r.boot = await cli.call('BootNotification', { chargePointVendor: 'interop', chargePointModel: 'ocpp-rpc' });
    r.heartbeat = await cli.call('Heartbeat', {});
    r.status = await cli.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Preparing' });
    r.authorize = await cli.call('Authorize', { idTag });
    r.start = await cli.call('StartTransaction', { connectorId: 1, idTag, meterStart: 2500000, timestamp: ts(0) });
    const transactionId = r.start.transactionId;
    r.meter = await cli.call('MeterValues', { connectorId: 1, transactionId, meterValue: [
      { timestamp: ts(10), sampledValue: [
        { value: '2.50183', unit: 'kWh', measurand: 'Energy.Active.Import.Register', context: 'Sample.Periodic' },
        { value: '11040', unit: 'W', measurand: 'Power.Active.Import' },
        { value: '16.0', unit: 'A', measurand: 'Current.Import', phase: 'L1' }] }] });
    r.dataTransfer = await cli.call('DataTransfer', { vendorId: 'interop', data: 'x' });
    r.stop = await cli.call('StopTransaction', { transactionId, meterStop: 2507321, timestamp: ts(40), reason: 'EVDisconnected', idTag,
      transactionData: [{ timestamp: ts(40), sampledValue: [{ value: '2507321', context: 'Transaction.End' }] }] });
    r.statusAfter = await cli.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
    log.expectedEnergyWh = 2507321 - 2500000;
  } else {
    r.boot = await cli.call('BootNotification', { chargingStation: { vendorName: 'interop', model: 'ocpp-rpc' }, reason: 'PowerUp' });
    r.heartbeat = await cli.call('Heartbeat', {});
    r.status = await cli.call('StatusNotification', { timestamp: ts(0), connectorStatus: 'Occupied', evseId: 1, connectorId: 1 });
    const idToken = { idToken: idTag, type: 'ISO14443' };
    r.authorize = await cli.call('Authorize', { idToken });
    const transactionInfo = { transactionId: 'interop-tx-1', chargingState: 'Charging' };
    const reg = (minutes, value, context, unit, multiplier) => ({ timestamp: ts(minutes), sampledValue: [
      { value, context, measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit, multiplier } }] });
    r.started = await cli.call('TransactionEvent', { eventType: 'Started', timestamp: ts(0), triggerReason: 'Authorized', seqNo: 0,
      transactionInfo, idToken, evse: { id: 1, connectorId: 1 }, meterValue: [reg(0, 1800.25, 'Transaction.Begin', 'kWh', 0)] });
    r.updated = await cli.call('TransactionEvent', { eventType: 'Updated', timestamp: ts(15), triggerReason: 'MeterValuePeriodic', seqNo: 1,
      transactionInfo, meterValue: [reg(15, 1803.1, 'Sample.Periodic', 'kWh', 0)] });
    r.ended = await cli.call('TransactionEvent', { eventType: 'Ended', timestamp: ts(30), triggerReason: 'EVCommunicationLost', seqNo: 2,
      transactionInfo: { transactionId: 'interop-tx-1', chargingState: 'Idle', stoppedReason: 'EVDisconnected' },
      meterValue: [reg(30, 1806.754, 'Transaction.End', 'Wh', 3)] });
    log.expectedEnergyWh = 1806754 - 1800250;
  }
  console.error('READY');  // the test now sends a Reset from the central system
  let timer;
  await Promise.race([resetSeen, new Promise((resolve) => { timer = setTimeout(resolve, 10000); })]);
  clearTimeout(timer);
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
