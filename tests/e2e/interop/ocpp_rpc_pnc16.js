// An independent OCPP 1.6 client (ocpp-rpc, strict mode) doing ISO 15118 Plug & Charge over
// DataTransfer (OCA application note): it reports ISO15118PnCEnabled when asked for its
// configuration, authorizes a contract, sends a V2G CSR and takes CertificateSigned, then
// takes a V2G root (InstallCertificate); prints what it saw as JSON.
// usage: node ocpp_rpc_pnc16.js ENDPOINT IDENTITY CSR_FILE EMAID
'use strict';
const fs = require('fs');
const { RPCClient } = require('ocpp-rpc');

const [endpoint, identity, csrFile, emaid] = process.argv.slice(2);
const VENDOR = 'org.openchargealliance.iso15118pnc';
const failures = [];
const log = { responses: {}, csmsCalls: [] };

function later(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());  // no wait at exit
}

async function main() {
  const cli = new RPCClient({ endpoint, identity, protocols: ['ocpp1.6'], strictMode: true,
    reconnect: false });
  cli.on('strictValidationFailure', (e) => failures.push(String(e.error && e.error.message)));
  let signed, installed, configured;
  const signedSeen = new Promise((resolve) => { signed = resolve; });
  const installSeen = new Promise((resolve) => { installed = resolve; });
  const configSeen = new Promise((resolve) => { configured = resolve; });
  cli.handle('GetConfiguration', ({ params }) => {
    log.csmsCalls.push({ method: 'GetConfiguration', params });
    configured();
    return { configurationKey: [
      { key: 'ISO15118PnCEnabled', readonly: false, value: 'true' },
      { key: 'CentralContractValidationAllowed', readonly: false, value: 'true' },
      { key: 'NumberOfConnectors', readonly: true, value: '1' }] };
  });
  cli.handle('DataTransfer', ({ params }) => {
    const inner = JSON.parse(params.data);
    log.csmsCalls.push({ method: 'DataTransfer', messageId: params.messageId, vendorId: params.vendorId, inner });
    if (params.messageId === 'CertificateSigned') signed();
    if (params.messageId === 'InstallCertificate') installed();
    return { status: 'Accepted', data: JSON.stringify({ status: 'Accepted' }) };
  });
  const wrapped = async (messageId, inner) => {
    const answer = await cli.call('DataTransfer', { vendorId: VENDOR, messageId, data: JSON.stringify(inner) });
    return { status: answer.status, inner: answer.data ? JSON.parse(answer.data) : null };
  };
  await cli.connect();
  log.negotiated = cli.protocol;
  const r = log.responses;
  r.boot = await cli.call('BootNotification', { chargePointVendor: 'interop', chargePointModel: 'ocpp-rpc' });
  await Promise.race([configSeen, later(10000)]);
  r.authorize = await wrapped('Authorize', { idToken: { idToken: emaid, type: 'eMAID' } });
  r.sign = await wrapped('SignCertificate', { csr: fs.readFileSync(csrFile, 'ascii'), certificateType: 'V2GCertificate' });
  r.broken = await cli.call('DataTransfer', { vendorId: VENDOR, messageId: 'Authorize', data: '{"idTag":"' + emaid + '"}' });
  await Promise.race([signedSeen, later(10000)]);
  console.error('READY');  // the test now installs a V2G root
  await Promise.race([installSeen, later(10000)]);
  r.heartbeat = await cli.call('Heartbeat', {});
  await cli.close({ code: 1000 });
  log.failures = failures;
  process.stdout.write(JSON.stringify(log) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && (err.stack || err)), failures }) + '\n');
  process.exit(1);
});
