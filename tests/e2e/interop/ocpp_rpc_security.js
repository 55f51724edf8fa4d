// An independent OCPP 2.0.1 client (ocpp-rpc, strict mode) asks for a certificate
// (SignCertificate -> CertificateSigned) and answers a base report (GetBaseReport ->
// NotifyReport in two parts); prints what it saw as JSON.
// usage: node ocpp_rpc_security.js ENDPOINT IDENTITY CSR_FILE
'use strict';
const fs = require('fs');
const { RPCClient } = require('ocpp-rpc');

const [endpoint, identity, csrFile] = process.argv.slice(2);
const failures = [];
const log = { responses: {}, csmsCalls: [] };

function later(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());  // no wait at exit
}

async function main() {
  const cli = new RPCClient({ endpoint, identity, protocols: ['ocpp2.0.1'], strictMode: true,
    reconnect: false });
  cli.on('strictValidationFailure', (e) => failures.push(String(e.error && e.error.message)));
  let signed, reported;
  const signedSeen = new Promise((resolve) => { signed = resolve; });
  const reportSent = new Promise((resolve) => { reported = resolve; });
  cli.handle('CertificateSigned', ({ params }) => {
    log.csmsCalls.push({ method: 'CertificateSigned', params });
    signed();
    return { status: 'Accepted' };
  });
  cli.handle('GetBaseReport', ({ params }) => {
    log.csmsCalls.push({ method: 'GetBaseReport', params });
    const part = (seqNo, tbc, name, value, mutability) => ({
      requestId: params.requestId, generatedAt: new Date().toISOString(), seqNo, tbc,
      reportData: [{ component: { name: 'OCPPCommCtrlr' }, variable: { name },
        variableAttribute: [{ type: 'Actual', value, mutability }],
        variableCharacteristics: { dataType: 'integer', supportsMonitoring: false } }] });
    // after the answer: the report in two parts
    setImmediate(async () => {
      try {
        log.responses.report0 = await cli.call('NotifyReport', part(0, true, 'HeartbeatInterval', '300', 'ReadWrite'));
        log.responses.report1 = await cli.call('NotifyReport', part(1, false, 'MessageAttempts', '3', 'ReadOnly'));
      } catch (err) {
        failures.push(String(err));
      }
      reported();
    });
    return { status: 'Accepted' };
  });
  await cli.connect();
  log.negotiated = cli.protocol;
  const r = log.responses;
  r.boot = await cli.call('BootNotification', { chargingStation: { vendorName: 'interop', model: 'ocpp-rpc' }, reason: 'PowerUp' });
  r.sign = await cli.call('SignCertificate', { csr: fs.readFileSync(csrFile, 'ascii'), certificateType: 'ChargingStationCertificate' });
  await Promise.race([signedSeen, later(10000)]);
  console.error('READY');  // the test now asks for a base report
  await Promise.race([reportSent, later(10000)]);
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
