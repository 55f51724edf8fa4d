// An independent OCPP client (ocpp-rpc, strict mode: every CALL and answer checked
// against the official schemas on its side) answers the central system's driver-facing
// and smart-charging commands and sends a station's reports; prints what it saw as JSON.
// usage: node ocpp_rpc_commands.js ENDPOINT IDENTITY PROTOCOL ID_TAG
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
  const pending = [];  // calls of ours started by a command, answered before we close
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  const answer = (method, result) => cli.handle(method, ({ params }) => {
    log.csmsCalls.push({ method, params });
    return result(params);
  });
  const schedule = { chargingRateUnit: 'W', chargingSchedulePeriod: [{ startPeriod: 0, limit: 7400 }] };
  answer('ClearCache', () => ({ status: 'Accepted' }));
  answer('Reset', () => { finished(); return { status: 'Accepted' }; });
  const r = log.responses;
  await cli.connect();
  log.negotiated = cli.protocol;
  if (protocol === 'ocpp1.6') {
    answer('GetCompositeSchedule', (p) => ({ status: 'Accepted', connectorId: p.connectorId,
      scheduleStart: ts(0), chargingSchedule: { duration: p.duration, ...schedule } }));
    answer('ExtendedTriggerMessage', () => ({ status: 'Accepted' }));
    answer('DataTransfer', () => ({ status: 'Accepted' }));
    r.boot = await cli.call('BootNotification', { chargePointVendor: 'interop', chargePointModel: 'ocpp-rpc' });
    r.authorize = await cli.call('Authorize', { idTag });
    r.start = await cli.call('StartTransaction', { connectorId: 1, idTag, meterStart: 1000, timestamp: ts(0) });
    r.meter = await cli.call('MeterValues', { connectorId: 1, transactionId: r.start.transactionId,
      meterValue: [{ timestamp: ts(10), sampledValue: [{ value: '5000', context: 'Sample.Periodic' }] }] });
  } else {
    answer('GetCompositeSchedule', (p) => ({ status: 'Accepted', schedule: { evseId: p.evseId,
      duration: p.duration, scheduleStart: ts(0), ...schedule } }));
    answer('CostUpdated', () => ({}));
    answer('SetDisplayMessage', () => ({ status: 'Accepted' }));
    answer('GetDisplayMessages', () => ({ status: 'Accepted' }));
    answer('ClearDisplayMessage', () => ({ status: 'Accepted' }));
    answer('GetTransactionStatus', () => ({ messagesInQueue: false, ongoingIndicator: true }));
    answer('CustomerInformation', () => ({ status: 'Accepted' }));
    answer('SetNetworkProfile', () => ({ status: 'Accepted' }));
    answer('GetChargingProfiles', () => ({ status: 'Accepted' }));
    // a local controller (L03/L04): accepts, then reports the image published on its URL
    answer('PublishFirmware', (p) => {
      // the report is waited for before the client closes (the test's Reset may come
      // first: closing then aborted it, "Client going away", a failure of nobody's)
      pending.push(new Promise((resolve) => setTimeout(resolve, 10)).then(() =>
        cli.call('PublishFirmwareStatusNotification', { status: 'Published', requestId: p.requestId,
          location: [`http://192.0.2.10/fw/${p.checksum}`] }))
        .then((res) => { r.published = res; }, (err) => failures.push(String(err))));
      return { status: 'Accepted' };
    });
    answer('UnpublishFirmware', () => ({ status: 'Unpublished' }));
    r.boot = await cli.call('BootNotification', { chargingStation: { vendorName: 'interop', model: 'ocpp-rpc' }, reason: 'PowerUp' });
    const idToken = { idToken: idTag, type: 'ISO14443' };
    r.authorize = await cli.call('Authorize', { idToken });
    const reg = (minutes, value, context) => [{ timestamp: ts(minutes), sampledValue: [
      { value, context, measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit: 'Wh' } }] }];
    r.started = await cli.call('TransactionEvent', { eventType: 'Started', timestamp: ts(0), triggerReason: 'Authorized',
      seqNo: 0, transactionInfo: { transactionId: 'interop-cost-1' }, idToken, evse: { id: 1, connectorId: 1 },
      meterValue: reg(0, 1000, 'Transaction.Begin') });
    r.updated = await cli.call('TransactionEvent', { eventType: 'Updated', timestamp: ts(10), triggerReason: 'MeterValuePeriodic',
      seqNo: 1, transactionInfo: { transactionId: 'interop-cost-1' }, meterValue: reg(10, 5000, 'Sample.Periodic') });
    r.displayMessages = await cli.call('NotifyDisplayMessages', { requestId: 1, messageInfo: [
      { id: 1, priority: 'NormalCycle', message: { format: 'UTF8', content: 'hello' } }] });
    r.customer = await cli.call('NotifyCustomerInformation', { data: 'nothing kept', seqNo: 0, generatedAt: ts(11), requestId: 2 });
    r.evNeeds = await cli.call('NotifyEVChargingNeeds', { evseId: 1, chargingNeeds: { requestedEnergyTransfer: 'DC' } });
    r.limit = await cli.call('NotifyChargingLimit', { chargingLimit: { chargingLimitSource: 'EMS' } });
  }
  console.error('READY');  // the test now sends its commands, Reset last
  let timer;
  await Promise.race([done, new Promise((resolve) => { timer = setTimeout(resolve, 20000); })]);
  clearTimeout(timer);
  await Promise.all(pending);
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
