// expose: for every Deployment labelled example.steersman.io/expose=true in one namespace, make
// sure a Service of the same name exists (selector = the Deployment's matchLabels, port 80 to
// 8080). Written from docs/protocol.md alone: it watches the Deployments bucket with a named
// consumer filtered on its namespace and writes only through the API's request/reply subjects.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connect, createInbox, ErrorCode, headers, isFlowControlMsg, isHeartbeatMsg, nanos, nkeyAuthenticator, nuid } from "nats";

const { values: opt } = parseArgs({
  options: {
    nats: { type: "string", default: process.env.STEER_NATS ?? "nats://127.0.0.1:4222" },
    creds: { type: "string", default: process.env.STEER_CREDS },
    namespace: { type: "string", default: process.env.STEER_NAMESPACE ?? "default" },
    resync: { type: "string", default: "30" },
  },
});
const NS = opt.namespace;
const LABEL = "example.steersman.io/expose";
const STREAM = "KV_steer-deployments";
const PREFIX = "$KV.steer-deployments.";
const log = (...a) => console.log(new Date().toISOString(), ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The credential: `# steer-identity: NAME` and the nkey seed (the line starting with SU).
const creds = readFileSync(opt.creds, "utf8");
const identity = /^#\s*steer-identity:\s*(\S+)/m.exec(creds)?.[1] ?? "anonymous";
const seed = creds.split("\n").map((l) => l.trim()).find((l) => l.startsWith("SU"));
const INBOX = `_INBOX_${identity}`; // the only subjects this identity may subscribe to

const nc = await connect({
  servers: opt.nats, name: `expose-${identity}`, inboxPrefix: INBOX,
  authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
  maxReconnectAttempts: -1, reconnectTimeWait: 500, reconnectJitter: 500, pingInterval: 5000, maxPingOut: 3,
});
nc.closed().then((err) => { log(`connection closed for good: ${err?.message ?? "closed"}`); process.exit(1); });
const jsm = await nc.jetstreamManager({ checkAPI: false }); // no $JS.API.INFO for a reader

class SteerError extends Error {
  constructor(reason, message) { super(`${reason}: ${message}`); this.reason = reason; }
}

// One API request, sent again as docs/protocol.md says ("Sending a request again").
async function api(verb, plural, body, createUid) {
  const subject = `steer.api.${verb}.${plural}.${NS}`;
  const until = Date.now() + 15_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    const h = headers();
    if (createUid) h.set("Steer-Create-Uid", createUid);
    let again = false;
    try {
      const m = await nc.request(subject, JSON.stringify(body), { timeout: 10_000, headers: h });
      const code = m.headers?.get("Nats-Service-Error-Code");
      if (!code) return m.json();
      const status = m.json();
      if (status.reason !== "ServiceUnavailable") throw new SteerError(status.reason, status.message);
      again = true;
    } catch (err) {
      if (err instanceof SteerError) throw err;
      if (err.code === ErrorCode.PermissionsViolation) { // the server's asynchronous -ERR
        throw new SteerError("Forbidden", `user "${identity}" cannot ${verb} ${plural} in the namespace "${NS}"`);
      }
      const timeout = err.code === ErrorCode.Timeout && (verb === "get" || verb === "list" || createUid);
      if (err.code !== ErrorCode.NoResponders && !timeout) throw err;
      again = true;
    }
    if (!again || Date.now() + delay > until) throw new SteerError("Timeout", `${subject}: no answer`);
    await sleep(delay / 2 + Math.random() * (delay / 2));
  }
}

// Level-based: a reconcile reads the cached Deployment and makes the Service agree with it.
const deployments = new Map(); // name -> Deployment, as the watch last showed it
async function reconcile(name) {
  const d = deployments.get(name);
  if (!d || d.metadata.labels?.[LABEL] !== "true" || d.metadata.deletionTimestamp) return;
  const selector = d.spec.selector.matchLabels ?? {};
  if (Object.keys(selector).length === 0) return log(`${NS}/${name}: no matchLabels, no Service`);
  const owner = { apiVersion: "apps/v1", kind: "Deployment", name, uid: d.metadata.uid, controller: true };
  let svc;
  try {
    svc = await api("get", "services", { name });
  } catch (err) {
    if (err.reason !== "NotFound") throw err;
    const spec = { selector, ports: [{ port: 80, targetPort: 8080 }] };
    const meta = { name, namespace: NS, ownerReferences: [owner] };
    await api("create", "services", { apiVersion: "v1", kind: "Service", metadata: meta, spec }, randomUUID());
    return log(`${NS}/${name}: created Service`);
  }
  if (!svc.metadata.ownerReferences?.some((o) => o.uid === owner.uid)) return; // not ours
  const had = svc.spec.selector ?? {};
  if (JSON.stringify(had) === JSON.stringify(selector)) return;
  const patch = Object.fromEntries(Object.keys(had).map((k) => [k, null])); // merge patch: drop old keys
  Object.assign(patch, selector);
  await api("patch", "services", { name, patch: { metadata: { resourceVersion: svc.metadata.resourceVersion }, spec: { selector: patch } } });
  log(`${NS}/${name}: updated the Service's selector`);
}

// A work queue: each name once, serially; a failure is logged and tried again with back-off.
const queue = new Set(), failures = new Map();
let wake = () => {};
const enqueue = (name) => { queue.add(name); wake(); };
(async () => {
  for (;;) {
    if (queue.size === 0) await new Promise((r) => (wake = r));
    const [name] = queue; queue.delete(name);
    try { await reconcile(name); failures.delete(name); } catch (err) {
      const n = (failures.get(name) ?? 0) + 1; failures.set(name, n);
      log(`${NS}/${name}: ${err.message} (again in ${Math.min(2 ** n, 60)} s)`);
      setTimeout(() => enqueue(name), Math.min(2 ** n, 60) * 1000);
    }
  }
})();

// The watch: a named consumer filtered on our namespace, ack policy none (readers may not ack),
// delivering to our own inbox; resumed after the last stream sequence seen.
let lastSeq = 0, lastCseq = 0, heard = Date.now(), consumer = null, starting = false, online = true;
async function watch() {
  if (starting) return; starting = true;
  try {
    if (consumer) { consumer.sub.unsubscribe(); jsm.consumers.delete(STREAM, consumer.name).catch(() => {}); consumer = null; }
    const name = `expose-${identity}-${nuid.next()}`, deliver = createInbox(INBOX);
    consumer = { name, sub: nc.subscribe(deliver, { callback: (_, m) => onMessage(m) }) };
    lastCseq = 0; heard = Date.now();
    await jsm.consumers.add(STREAM, {
      name, filter_subject: `${PREFIX}${NS}.>`, deliver_subject: deliver, ack_policy: "none",
      ...(lastSeq ? { deliver_policy: "by_start_sequence", opt_start_seq: lastSeq + 1 } : { deliver_policy: "last_per_subject" }),
      flow_control: true, idle_heartbeat: nanos(2000), mem_storage: true, num_replicas: 1, inactive_threshold: nanos(30_000),
    });
    log(`watching Deployments in namespace "${NS}" as "${identity}"`);
  } catch (err) {
    const forbidden = err.code === ErrorCode.PermissionsViolation ? `Forbidden: user "${identity}" cannot watch deployments in the namespace "${NS}": ` : "";
    log(`${forbidden}${err.message}; trying again in 5 s`);
    consumer?.sub.unsubscribe(); consumer = null;
  } finally { starting = false; }
}
function onMessage(m) {
  heard = Date.now();
  if (isFlowControlMsg(m)) return m.reply && m.respond(); // $JS.FC.<stream>.>
  if (isHeartbeatMsg(m)) { const stalled = m.headers.get("Nats-Consumer-Stalled"); if (stalled) nc.publish(stalled); return; }
  const t = m.reply.split("."), o = t.length === 9 ? 0 : 2; // $JS.ACK.[domain.hash.]stream.consumer.n.sseq.cseq.ts.pending
  const sseq = Number(t[5 + o]), cseq = Number(t[6 + o]);
  if (cseq !== lastCseq + 1) return void watch(); // a gap: resume after the last one seen
  lastCseq = cseq; lastSeq = sseq;
  const name = m.subject.slice(PREFIX.length + NS.length + 1), op = m.headers?.get("KV-Operation");
  if (op === "DEL" || op === "PURGE") deployments.delete(name);
  else deployments.set(name, m.json());
  enqueue(name);
}

await watch();
setInterval(() => { if (online && (!consumer || Date.now() - heard > 6000)) watch(); }, 5000); // heartbeats missed
setInterval(() => deployments.forEach((_, name) => enqueue(name)), Number(opt.resync) * 1000);
for await (const s of nc.status()) {
  if (s.type === "disconnect") online = false;
  if (s.type === "reconnect") { online = true; log("reconnected: resuming the watch"); watch(); }
  if (s.type === "error" && s.data === ErrorCode.AuthorizationViolation) { log("the server refused the credential"); process.exit(1); }
  if (s.type === "error" && s.permissionContext) log(`denied: ${s.permissionContext.operation} to ${s.permissionContext.subject}`);
}
