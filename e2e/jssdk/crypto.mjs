// crypto.mjs drives the real matrix-js-sdk with its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm, run by Node) against a running lattice
// server, to check end-to-end encryption interoperates.
//
// It is started by ../jssdk_crypto_test.go (TestMatrixJSSDKCrypto), which
// registers alice and bob on one server, and by ../jssdk_federation_test.go
// (TestJSSDKCryptoFederation), which registers alice on server A and bob on a
// federating server B; both pass the credentials here over plain HTTP:
//
//   LATTICE_URL                              alice's homeserver base URL (http://127.0.0.1:PORT)
//   BOB_URL                                  bob's homeserver base URL (default: LATTICE_URL)
//   ALICE_USER, ALICE_TOKEN, ALICE_DEVICE    alice's user ID, access token, device ID
//   BOB_USER, BOB_TOKEN, BOB_DEVICE          bob's
//   LATTICE_PASSWORD                         both accounts' password (UIA, new logins)
//   CRYPTO_PHASES                            the optional phases to run after 1-4, comma-separated,
//                                            in this order: new-device (below, 4b), cross-signing (5),
//                                            backup (6); default "cross-signing,backup"
//   LATTICE_JSSDK_TRACE=1                    print every HTTP request the SDK makes
//   LATTICE_JSSDK_SDK_LOG=1                  let the SDK's own debug/info logging through
//
// What it checks:
//   1. both clients initialise the Rust crypto with the in-memory store
//      (initRustCrypto({useIndexedDB: false})), start syncing and upload their
//      device keys and one-time keys (/keys/upload);
//   2. alice creates a room with m.room.encryption (m.megolm.v1.aes-sha2) in its
//      initial state, inviting bob; bob joins; both clients see the room as encrypted;
//   3. each client sees the other's device through /keys/query (getUserDeviceInfo),
//      with the device ID and the ed25519/curve25519 keys the other one uploaded;
//   4. alice sends a text message: the SDK claims one of bob's one-time keys
//      (/keys/claim), sends him the megolm room key olm-encrypted over
//      /sendToDevice, and sends an m.room.encrypted event; bob gets the to-device
//      message and the event through /sync and decrypts it to the same text;
//      then bob replies the same way and alice decrypts his reply;
//  4b. (new-device) bob logs in a second device on his homeserver; alice's
//      client learns of it (bob listed again in her /sync device_lists.changed,
//      then /keys/query; across servers that takes the m.device_list_update
//      EDU and a federated key query), claims its one-time key, and alice's
//      next message is decrypted by both of bob's devices;
//   5. cross-signing: alice bootstraps cross-signing (/keys/device_signing/upload
//      with UIA by m.login.password, then /keys/signatures/upload for her device);
//      bob's client sees alice's cross-signing identity and her device as signed
//      by its owner;
//   6. key backup: alice creates a backup version (resetKeyBackup) and her client
//      uploads the room keys (/room_keys/keys); a new alice device, given the
//      backup key, restores them from the server (restoreKeyBackup) and decrypts
//      the earlier messages;
//   7. the transcript shows /keys/upload, /keys/query, /keys/claim and
//      /sendToDevice called with 2xx answers, and no unexpected non-2xx answer.
//
// Any failure prints "FAIL: ..." and exits 1; success prints "PASS" and exits 0.

import * as sdk from "matrix-js-sdk";

const OVERALL_TIMEOUT_MS = 150_000;
const STEP_TIMEOUT_MS = 30_000;

const t0 = Date.now();
function say(...parts) {
    const secs = ((Date.now() - t0) / 1000).toFixed(2).padStart(6);
    process.stdout.write(`[${secs}s] ${parts.join(" ")}\n`);
}

let finished = false;
const clients = [];
function stopAll() {
    for (const c of clients) {
        try {
            c.stopClient();
        } catch {
            // ignore
        }
    }
}
function fail(msg) {
    if (finished) return;
    finished = true;
    say(`FAIL: ${msg}`);
    printHttpSummary();
    stopAll();
    process.exit(1);
}

setTimeout(() => fail(`overall timeout of ${OVERALL_TIMEOUT_MS / 1000}s exceeded`), OVERALL_TIMEOUT_MS);
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${describeErr(err)}`));
process.on("uncaughtException", (err) => fail(`uncaught exception: ${describeErr(err)}`));

if (!process.env.LATTICE_JSSDK_SDK_LOG) {
    console.debug = () => {};
    console.info = () => {};
    console.log = () => {};
    console.trace = () => {};
}
const origWarn = console.warn.bind(console);
const origError = console.error.bind(console);
const brief = (a) => (a instanceof Error ? describeErr(a).split("\n")[0] : a);
// While a step expects undecryptable events (a new device before restoring the
// key backup), the SDK's warnings about them are dropped: the step reports them.
let quietUTD = false;
const utdNoise = /Failed to decrypt a room event|Error decrypting event/;
console.warn = (...a) => {
    if (quietUTD && utdNoise.test(a.filter((x) => typeof x === "string").join(" "))) return;
    origWarn("sdk warn:", ...a.map(brief));
};
const noise = /^\[MatrixRTCSessionManager\] Got room state event for unknown room/;
console.error = (...a) => {
    const text = a.filter((x) => typeof x === "string").join(" ");
    if (noise.test(text)) return;
    origError("sdk error:", ...a.map(brief));
};

function describeErr(err) {
    if (!err) return String(err);
    if (err instanceof sdk.MatrixError || err?.httpStatus) {
        const url = err.url && !String(err.message).includes(err.url) ? ` (${err.url})` : "";
        return `HTTP ${err.httpStatus ?? "?"} ${err.errcode ?? ""}: ${err.message ?? ""}${url}`;
    }
    return err.stack ?? err.message ?? String(err);
}

function env(name, def) {
    const v = process.env[name];
    if (v === undefined || v === "") {
        if (def !== undefined) return def;
        fail(`environment variable ${name} is not set`);
    }
    return v;
}

const baseUrl = env("LATTICE_URL");
const bobUrl = env("BOB_URL", baseUrl);
const phases = new Set(env("CRYPTO_PHASES", "cross-signing,backup").split(",").map((p) => p.trim()).filter(Boolean));
for (const p of phases) {
    if (!["new-device", "cross-signing", "backup"].includes(p)) fail(`CRYPTO_PHASES: unknown phase ${JSON.stringify(p)}`);
}
const password = env("LATTICE_PASSWORD", "correct horse battery");
const TRACE = !!process.env.LATTICE_JSSDK_TRACE;

// ---------------------------------------------------------------------------
// HTTP transcript: every request the SDK makes goes through this fetch. Each is
// counted per endpoint (method and path with the /_matrix/client/vN prefix and
// the IDs taken out), split by 2xx and non-2xx.

const httpFailures = [];
const endpointStats = new Map(); // "POST /keys/upload" -> {ok, bad, statuses: Set}
// Per client: the to-device events its /sync responses carried, and the last
// one-time key counts and device list changes /sync reported.
const syncSeen = {};

function endpointOf(method, pathname) {
    let p = pathname.replace(/^\/_matrix\/client\/(?:v\d+|r0|unstable)(?:\/[a-z.]+\.[a-z0-9.]+(?=\/))?/, "");
    p = p
        .replace(/^\/sendToDevice\/([^/]+)\/[^/]+$/, "/sendToDevice/$1/{txn}")
        .replace(/^\/rooms\/[^/]+\/send\/([^/]+)\/[^/]+$/, "/rooms/{room}/send/$1/{txn}")
        .replace(/^\/rooms\/[^/]+\//, "/rooms/{room}/")
        .replace(/^\/user\/[^/]+\/filter(\/[^/]+)?$/, "/user/{user}/filter$1")
        .replace(/^\/user\/[^/]+\//, "/user/{user}/")
        .replace(/^\/room_keys\/version\/[^/]+$/, "/room_keys/version/{version}")
        .replace(/^\/room_keys\/keys\/.+$/, "/room_keys/keys/{...}")
        .replace(/^\/join\/.+$/, "/join/{room}")
        .replace(/^\/profile\/.+$/, "/profile/{...}");
    return `${method} ${decodeURIComponent(p)}`;
}

// Non-2xx answers the spec prescribes for a state the SDK probes on purpose
// (e.g. "no key backup yet"). Each is shown, but not counted as a failure.
const benign = [
    { method: "GET", re: /\/room_keys\/version$/, status: 404, errcode: "M_NOT_FOUND", why: "no key backup version exists yet (spec: 404 M_NOT_FOUND)" },
    { method: "GET", re: /\/user\/[^/]+\/account_data\/[^/]+$/, status: 404, errcode: "M_NOT_FOUND", why: "account data not set (spec: 404 M_NOT_FOUND)" },
    // A client that cannot decrypt an event asks the backup for its session; until the
    // session is uploaded the backup does not have it.
    { method: "GET", re: /\/room_keys\/keys\/[^/]+\/[^/]+$/, status: 404, errcode: "M_NOT_FOUND", why: "the backup has no key for that session yet (spec: 404 M_NOT_FOUND)" },
];
// Non-2xx answers a step provokes on purpose (the UIA 401 challenge): each
// entry excuses one matching response.
const expectedHttp = [];
function expectHttp(client, method, pathRe, status, why) {
    const e = { client, method, pathRe, status, why, seen: 0 };
    expectedHttp.push(e);
    return e;
}

function makeFetch(name) {
    return async (input, init = {}) => {
        const method = (init.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
        const u = new URL(input instanceof Request ? input.url : input.toString());
        const path = u.pathname + (u.search ? u.search.replace(/access_token=[^&]*/, "access_token=REDACTED") : "");
        const ep = endpointOf(method, u.pathname);
        const started = Date.now();
        let res;
        try {
            res = await fetch(input, init);
        } catch (err) {
            if (!finished && err?.name !== "AbortError") {
                say(`http ${name}: ${method} ${path} -> network error: ${err?.message ?? err}`);
            }
            throw err;
        }
        const ms = Date.now() - started;
        let st = endpointStats.get(ep);
        if (!st) endpointStats.set(ep, (st = { ok: 0, bad: 0, statuses: new Set() }));
        st.statuses.add(res.status);
        if (res.ok) {
            st.ok++;
            if (TRACE) say(`http ${name}: ${method} ${path} -> ${res.status} (${ms}ms)`);
            if (ep === "GET /sync") noteSync(name, res.clone());
            if (ep === "POST /keys/claim") noteClaim(name, res.clone());
            return res;
        }
        st.bad++;
        let body = "";
        try {
            body = await res.clone().text();
        } catch {
            // ignore
        }
        if (body.length > 500) body = body.slice(0, 500) + "...";
        let errcode;
        try {
            errcode = JSON.parse(body)?.errcode;
        } catch {
            // not JSON
        }
        const oneLine = body.replace(/\s+/g, " ");
        const b = benign.find((x) => x.method === method && x.re.test(u.pathname) && x.status === res.status && x.errcode === errcode);
        const i = expectedHttp.findIndex((e) => e.client === name && e.method === method && e.pathRe.test(u.pathname) && e.status === res.status);
        if (i >= 0) {
            const [e] = expectedHttp.splice(i, 1);
            e.seen++;
            say(`http ${name}: ${method} ${path} -> ${res.status} ${oneLine} (expected: ${e.why})`);
        } else if (b) {
            if (TRACE) say(`http ${name}: ${method} ${path} -> ${res.status} ${oneLine} (fine: ${b.why})`);
        } else {
            httpFailures.push({ client: name, method, path, status: res.status, body });
            say(`http ${name}: ${method} ${path} -> ${res.status} ${oneLine}`);
        }
        return res;
    };
}

async function noteSync(name, res) {
    let js;
    try {
        js = await res.json();
    } catch {
        return;
    }
    const s = (syncSeen[name] ??= { toDevice: [], changed: new Set(), changedLog: [], otkCounts: null, fallback: null });
    for (const ev of js.to_device?.events ?? []) {
        s.toDevice.push({ type: ev.type, sender: ev.sender, algorithm: ev.content?.algorithm });
        say(`${name}: /sync delivered to-device ${ev.type} from ${ev.sender}${ev.content?.algorithm ? ` (${ev.content.algorithm})` : ""}`);
    }
    for (const u of js.device_lists?.changed ?? []) {
        s.changed.add(u);
        s.changedLog.push(u); // in order, repeats kept: a later change of the same user shows
    }
    if (js.device_one_time_keys_count) s.otkCounts = js.device_one_time_keys_count;
    if (js.device_unused_fallback_key_types) s.fallback = js.device_unused_fallback_key_types;
}

// What each client's /keys/claim calls returned: [{userId, deviceId, keyId}].
const claimed = {};
async function noteClaim(name, res) {
    let js;
    try {
        js = await res.json();
    } catch {
        return;
    }
    for (const [userId, devs] of Object.entries(js.one_time_keys ?? {})) {
        for (const [deviceId, keys] of Object.entries(devs)) {
            for (const keyId of Object.keys(keys)) (claimed[name] ??= []).push({ userId, deviceId, keyId, key: keys[keyId] });
        }
    }
    if (Object.keys(js.failures ?? {}).length) say(`${name}: /keys/claim failures: ${JSON.stringify(js.failures)}`);
}

function printHttpSummary() {
    say("http: requests per endpoint (2xx / non-2xx):");
    for (const [ep, st] of [...endpointStats].sort(([a], [b]) => a.localeCompare(b))) {
        say(`  ${ep.padEnd(52)} ${String(st.ok).padStart(4)} / ${st.bad}  statuses ${[...st.statuses].sort().join(",")}`);
    }
    if (httpFailures.length === 0) {
        say("http: no unexpected non-2xx response");
        return;
    }
    say(`http: ${httpFailures.length} unexpected non-2xx response(s):`);
    for (const f of httpFailures) {
        say(`  ${f.client}: ${f.method} ${f.path} -> ${f.status} ${f.body.replace(/\s+/g, " ")}`);
    }
}

// ---------------------------------------------------------------------------
// Helpers.

function withTimeout(promise, ms, what) {
    let timer;
    return Promise.race([
        promise,
        new Promise((_, reject) => {
            const desc = () => (typeof what === "function" ? what() : what);
            timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s waiting for ${desc()}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

// Polls pred (which may be async) every 100ms until it holds.
function waitUntil(pred, what, ms = STEP_TIMEOUT_MS, every = 100) {
    let done = false;
    return withTimeout(
        (async () => {
            while (!done) {
                if (await pred()) return;
                await new Promise((r) => setTimeout(r, every));
            }
        })(),
        ms,
        what,
    ).finally(() => {
        done = true;
    });
}

async function step(what, fn) {
    try {
        // A little longer than waitUntil's own timeout, whose message says more.
        return await withTimeout(Promise.resolve().then(fn), STEP_TIMEOUT_MS + 5000, what);
    } catch (err) {
        fail(`${what}: ${describeErr(err)}`);
        throw err;
    }
}

// newClient makes a client of the given account on its homeserver (hsUrl, default LATTICE_URL).
function newClient(name, { userId, accessToken, deviceId, hsUrl = baseUrl }) {
    const client = sdk.createClient({ baseUrl: hsUrl, userId, accessToken, deviceId, fetchFn: makeFetch(name) });
    clients.push(client);
    return client;
}

async function initCrypto(name, client) {
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    if (!crypto) throw new Error("getCrypto() is undefined after initRustCrypto");
    const keys = await crypto.getOwnDeviceKeys();
    say(`${name}: Rust crypto ready (${crypto.getVersion()}); device ${client.getDeviceId()} ed25519 ${keys.ed25519} curve25519 ${keys.curve25519}`);
    return keys;
}

function startAndWaitPrepared(name, client) {
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, prev, data) => {
            if (state !== prev) say(`${name}: sync state ${prev ?? "null"} -> ${state}`);
            if (state === "PREPARED") resolve();
            if (state === "ERROR") {
                const msg = `${name}: sync loop reported ERROR: ${describeErr(data?.error)}`;
                if (finished) return;
                reject(new Error(msg));
                fail(msg);
            }
        });
    });
    return client.startClient({ initialSyncLimit: 20 }).then(() => prepared);
}

// Records every live m.room.encrypted event a client's sync shows in one room,
// and lets a step wait for one with a given clear-text body.
class Observer {
    constructor(name, client) {
        this.name = name;
        this.client = client;
        this.roomId = null;
        this.events = []; // MatrixEvents that arrived encrypted
        this.decryptFailures = [];
        client.on(sdk.RoomEvent.Timeline, (ev, room, toStart, removed, data) => {
            if (!room || room.roomId !== this.roomId || toStart || removed || !data?.liveEvent) return;
            if (ev.getWireType() !== "m.room.encrypted" && ev.getType() !== "m.room.message") return;
            const id = ev.getId();
            if (!id || id.startsWith("~") || ev.status) return; // local echo
            if (!this.events.includes(ev)) this.events.push(ev);
        });
        client.on(sdk.MatrixEventEvent.Decrypted, (ev, err) => {
            if (ev.getRoomId() !== this.roomId) return;
            if (err || ev.isDecryptionFailure()) {
                const why = `${ev.getId()}: ${err?.message ?? ev.decryptionFailureReason ?? ev.getContent()?.body}`;
                this.decryptFailures.push(why);
                say(`${name}: could not decrypt (yet) ${why}`);
            }
        });
    }

    find(text, sender) {
        return this.events.find((e) => e.getSender() === sender && e.getClearContent()?.body === text);
    }

    describe() {
        return this.events
            .map((e) => `${e.getId()} ${e.getWireType()}->${e.getType()} ${e.isDecryptionFailure() ? "UTD" : JSON.stringify(e.getClearContent()?.body ?? e.getContent()?.body)}`)
            .join("; ");
    }

    async waitFor(text, sender) {
        await waitUntil(
            () => this.find(text, sender),
            () => `${this.name} to receive and decrypt ${JSON.stringify(text)} from ${sender} (encrypted events seen: [${this.describe()}]; decryption failures: ${JSON.stringify(this.decryptFailures)})`,
        );
        return this.find(text, sender);
    }
}

// login logs localpart in as a new device on hsUrl (default LATTICE_URL).
async function login(name, localpart, hsUrl = baseUrl) {
    const anon = sdk.createClient({ baseUrl: hsUrl, fetchFn: makeFetch(`${name}-login`) });
    const res = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password,
        initial_device_display_name: `js-sdk crypto e2e ${name}`,
    });
    say(`${name}: logged in as ${res.user_id}, device ${res.device_id}`);
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id, hsUrl };
}

function localpartOf(userId) {
    return userId.replace(/^@/, "").replace(/:.*$/, "");
}

function expectEndpointOk(ep) {
    const st = endpointStats.get(ep);
    if (!st || st.ok === 0) {
        fail(`the SDK never got a 2xx answer from ${ep} (seen: ${st ? `${st.ok} ok, ${st.bad} failed, statuses ${[...st.statuses]}` : "never called"})`);
    }
    return st;
}

// ---------------------------------------------------------------------------
// The scenario.

const alice = { userId: env("ALICE_USER"), accessToken: env("ALICE_TOKEN"), deviceId: env("ALICE_DEVICE") };
const bob = { userId: env("BOB_USER"), accessToken: env("BOB_TOKEN"), deviceId: env("BOB_DEVICE"), hsUrl: bobUrl };
say(
    bobUrl === baseUrl
        ? `matrix-js-sdk Rust crypto against ${baseUrl}: alice=${alice.userId}/${alice.deviceId} bob=${bob.userId}/${bob.deviceId}`
        : `matrix-js-sdk Rust crypto across two servers: alice=${alice.userId}/${alice.deviceId} on ${baseUrl}, bob=${bob.userId}/${bob.deviceId} on ${bobUrl}`,
);
say(`phases after 1-4: ${[...phases].join(", ") || "none"}`);
say(`node ${process.version}; globalThis.crypto.subtle ${globalThis.crypto?.subtle ? "present" : "MISSING"}`);

// 1. Crypto and sync.
const aliceClient = newClient("alice", alice);
const bobClient = newClient("bob", bob);
const aliceKeys = await step("alice: initRustCrypto({useIndexedDB: false})", () => initCrypto("alice", aliceClient));
const bobKeys = await step("bob: initRustCrypto({useIndexedDB: false})", () => initCrypto("bob", bobClient));
const aliceObs = new Observer("alice", aliceClient);
const bobObs = new Observer("bob", bobClient);

const toDeviceSeen = { alice: [], bob: [] };
for (const [name, client] of [
    ["alice", aliceClient],
    ["bob", bobClient],
]) {
    client.on(sdk.ClientEvent.ToDeviceEvent, (ev) => {
        toDeviceSeen[name].push({ type: ev.getType(), sender: ev.getSender() });
        say(`${name}: SDK processed to-device ${ev.getType()} from ${ev.getSender()}`);
    });
}

const bobJoining = new Set();
bobClient.on(sdk.RoomMemberEvent.Membership, (ev, member) => {
    if (member.userId !== bob.userId || member.membership !== "invite" || bobJoining.has(member.roomId)) return;
    bobJoining.add(member.roomId);
    say(`bob: invited to ${member.roomId} by ${ev.getSender()}, joining`);
    bobClient.joinRoom(member.roomId).then(
        () => say(`bob: joined ${member.roomId}`),
        (err) => fail(`bob: joinRoom ${member.roomId}: ${describeErr(err)}`),
    );
});

await step("starting alice and bob", () => Promise.all([startAndWaitPrepared("alice", aliceClient), startAndWaitPrepared("bob", bobClient)]));
say("alice and bob: PREPARED");

// Each client's device keys and one-time keys reach the server: /sync reports
// the one-time key count the client uploaded.
await step("alice and bob upload keys (/keys/upload, /sync device_one_time_keys_count)", () =>
    waitUntil(
        () =>
            endpointStats.get("POST /keys/upload")?.ok >= 2 &&
            syncSeen.alice?.otkCounts?.signed_curve25519 > 0 &&
            syncSeen.bob?.otkCounts?.signed_curve25519 > 0,
        () =>
            `both clients to upload keys and /sync to count their one-time keys ` +
            `(POST /keys/upload 2xx: ${endpointStats.get("POST /keys/upload")?.ok ?? 0}; ` +
            `device_one_time_keys_count alice ${JSON.stringify(syncSeen.alice?.otkCounts)} bob ${JSON.stringify(syncSeen.bob?.otkCounts)})`,
    ),
);
say(
    `keys uploaded; /sync device_one_time_keys_count alice ${JSON.stringify(syncSeen.alice.otkCounts)} bob ${JSON.stringify(syncSeen.bob.otkCounts)}; ` +
        `device_unused_fallback_key_types alice ${JSON.stringify(syncSeen.alice.fallback)} bob ${JSON.stringify(syncSeen.bob.fallback)}`,
);

// 2. Encrypted room.
const { room_id: roomId } = await step("alice: createRoom (encrypted)", () =>
    aliceClient.createRoom({
        name: "js-sdk e2ee",
        preset: sdk.Preset.PrivateChat,
        invite: [bob.userId],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    }),
);
aliceObs.roomId = roomId;
bobObs.roomId = roomId;
say(`alice: created ${roomId} with m.room.encryption, invited bob`);

await step("bob joins", () =>
    waitUntil(
        () => bobClient.getRoom(roomId)?.getMyMembership() === "join" && aliceClient.getRoom(roomId)?.getMember(bob.userId)?.membership === "join",
        "bob to be joined in both clients' view of the room",
    ),
);
say("bob: joined; both clients see it");

for (const [name, client] of [
    ["alice", aliceClient],
    ["bob", bobClient],
]) {
    await step(`${name} sees the room as encrypted`, () =>
        waitUntil(
            () => client.getCrypto().isEncryptionEnabledInRoom(roomId),
            () => `${name}'s crypto to consider ${roomId} encrypted (room state m.room.encryption: ${JSON.stringify(client.getRoom(roomId)?.currentState.getStateEvents("m.room.encryption", "")?.getContent())})`,
        ),
    );
}
say("alice and bob: the room is encrypted (m.megolm.v1.aes-sha2) for both crypto stacks");

// 3. Device discovery (/keys/query).
async function waitForDevice(name, client, other, otherKeys) {
    let last = "";
    await waitUntil(
        async () => {
            const map = await client.getCrypto().getUserDeviceInfo([other.userId], true);
            const devs = map.get(other.userId);
            last = devs ? JSON.stringify([...devs.keys()]) : "no entry";
            return devs?.has(other.deviceId);
        },
        () => `${name} to see device ${other.deviceId} of ${other.userId} (getUserDeviceInfo gives ${last})`,
    );
    const dev = (await client.getCrypto().getUserDeviceInfo([other.userId])).get(other.userId).get(other.deviceId);
    if (dev.getIdentityKey() !== otherKeys.curve25519 || dev.getFingerprint() !== otherKeys.ed25519) {
        fail(
            `${name}: ${other.userId}'s device ${other.deviceId} has curve25519 ${dev.getIdentityKey()} ed25519 ${dev.getFingerprint()}, ` +
                `but it uploaded curve25519 ${otherKeys.curve25519} ed25519 ${otherKeys.ed25519}`,
        );
    }
    if (!dev.algorithms.includes("m.megolm.v1.aes-sha2")) fail(`${name}: ${other.deviceId} advertises algorithms ${JSON.stringify(dev.algorithms)}`);
    say(`${name}: sees ${other.userId}'s device ${other.deviceId} with the keys it uploaded (algorithms ${dev.algorithms.join(", ")})`);
}
await step("alice sees bob's device", () => waitForDevice("alice", aliceClient, bob, bobKeys));
await step("bob sees alice's device", () => waitForDevice("bob", bobClient, alice, aliceKeys));
if (aliceClient.getCrypto().globalBlacklistUnverifiedDevices) fail("alice: globalBlacklistUnverifiedDevices is true by default");

// 4. Encrypted messages both ways.
const claimsBefore = endpointStats.get("POST /keys/claim")?.ok ?? 0;
const aliceText = "alice: this message is end-to-end encrypted";
const sent1 = await step("alice: sendTextMessage (encrypted)", () => aliceClient.sendTextMessage(roomId, aliceText));
say(`alice: sent ${sent1.event_id}`);
const got1 = await step("bob receives and decrypts alice's message", () => bobObs.waitFor(aliceText, alice.userId));
if (got1.getId() !== sent1.event_id) fail(`bob: decrypted alice's message as ${got1.getId()}, /send returned ${sent1.event_id}`);
if (got1.getWireType() !== "m.room.encrypted") fail(`bob: alice's message arrived as ${got1.getWireType()}, want m.room.encrypted`);
if (got1.getWireContent().algorithm !== "m.megolm.v1.aes-sha2" || typeof got1.getWireContent().ciphertext !== "string") {
    fail(`bob: alice's message has wire content ${JSON.stringify(got1.getWireContent())}`);
}
if (JSON.stringify(got1.getWireContent()).includes(aliceText)) fail("bob: alice's plaintext is visible in the wire content");
if (got1.getType() !== "m.room.message" || got1.getClearContent().msgtype !== "m.text") {
    fail(`bob: decrypted event is ${got1.getType()} ${JSON.stringify(got1.getClearContent())}`);
}
if (!syncSeen.bob?.toDevice.some((e) => e.type === "m.room.encrypted" && e.sender === alice.userId && e.algorithm === "m.olm.v1.curve25519-aes-sha2")) {
    fail(`bob: no olm-encrypted to-device message from alice came down /sync (to-device seen: ${JSON.stringify(syncSeen.bob?.toDevice)})`);
}
{
    const info = await bobClient.getCrypto().getEncryptionInfoForEvent(got1);
    say(`bob: decrypted ${got1.getId()} (${got1.getWireType()} -> ${got1.getType()}): ${JSON.stringify(got1.getClearContent().body)}; shield ${["NONE", "GREY", "RED"][info?.shieldColour] ?? info?.shieldColour}` +
        ` ${["UNKNOWN", "UNVERIFIED_IDENTITY", "UNSIGNED_DEVICE", "UNKNOWN_DEVICE", "AUTHENTICITY_NOT_GUARANTEED"][info?.shieldReason] ?? ""} (alice's device is not cross-signed yet)`);
}
if ((endpointStats.get("POST /keys/claim")?.ok ?? 0) <= claimsBefore) fail("alice: sent an encrypted message without claiming bob's one-time key (/keys/claim)");
{
    const c = (claimed.alice ?? []).find((k) => k.userId === bob.userId && k.deviceId === bob.deviceId);
    if (!c) fail(`alice: /keys/claim returned no key for bob's device ${bob.deviceId} (claimed: ${JSON.stringify(claimed.alice)})`);
    if (!c.keyId.startsWith("signed_curve25519:") || typeof c.key?.key !== "string" || !c.key.signatures?.[bob.userId]?.[`ed25519:${bob.deviceId}`]) {
        fail(`alice: /keys/claim returned ${c.keyId} ${JSON.stringify(c.key)} for bob's device, want a signed_curve25519 key signed by ed25519:${bob.deviceId}`);
    }
    say(`alice: /keys/claim gave her bob's ${c.keyId}${c.key.fallback ? " (fallback key)" : ""}, signed by his device`);
}

const bobText = "bob: and this reply is encrypted too";
const sent2 = await step("bob: sendTextMessage (encrypted)", () => bobClient.sendTextMessage(roomId, bobText));
say(`bob: sent ${sent2.event_id}`);
const got2 = await step("alice receives and decrypts bob's reply", () => aliceObs.waitFor(bobText, bob.userId));
if (got2.getId() !== sent2.event_id) fail(`alice: decrypted bob's reply as ${got2.getId()}, /send returned ${sent2.event_id}`);
if (got2.getWireType() !== "m.room.encrypted" || got2.getWireContent().algorithm !== "m.megolm.v1.aes-sha2") {
    fail(`alice: bob's reply arrived as ${got2.getWireType()} ${JSON.stringify(got2.getWireContent())}`);
}
if (!syncSeen.alice?.toDevice.some((e) => e.type === "m.room.encrypted" && e.sender === bob.userId)) {
    fail(`alice: no encrypted to-device message from bob came down /sync (to-device seen: ${JSON.stringify(syncSeen.alice?.toDevice)})`);
}
say(`alice: decrypted ${got2.getId()}: ${JSON.stringify(got2.getClearContent().body)}`);

// A second message from alice reuses the megolm session (no new to-device).
const aliceText2 = "alice: a second message in the same megolm session";
const sent3 = await step("alice: second encrypted message", () => aliceClient.sendTextMessage(roomId, aliceText2));
const got3 = await step("bob decrypts alice's second message", () => bobObs.waitFor(aliceText2, alice.userId));
if (got3.getWireContent().session_id !== got1.getWireContent().session_id) {
    say(`note: alice rotated her megolm session (${got1.getWireContent().session_id} -> ${got3.getWireContent().session_id})`);
}
say(`bob: decrypted alice's second message ${got3.getId()}`);

for (const ep of ["POST /keys/upload", "POST /keys/query", "POST /keys/claim"]) expectEndpointOk(ep);
{
    const tdEps = [...endpointStats.keys()].filter((k) => k.startsWith("PUT /sendToDevice/"));
    if (!tdEps.some((k) => endpointStats.get(k).ok > 0)) fail(`no successful PUT /sendToDevice (endpoints seen: ${tdEps.join(", ") || "none"})`);
    say(`transcript: /keys/upload, /keys/query, /keys/claim and ${tdEps.join(", ")} answered 2xx`);
}
say("phase 1-4: encrypted messages both ways: done");

// 4b. A second device of bob's, learnt by alice's client.
if (phases.has("new-device")) {
    const changedBefore = syncSeen.alice?.changedLog.length ?? 0;
    const queriesBefore = endpointStats.get("POST /keys/query")?.ok ?? 0;
    const creds = await step("bob2: loginRequest (bob's second device)", () => login("bob2", localpartOf(bob.userId), bobUrl));
    const bob2 = newClient("bob2", creds);
    const bob2Keys = await step("bob2: initRustCrypto", () => initCrypto("bob2", bob2));
    const bob2Obs = new Observer("bob2", bob2);
    bob2Obs.roomId = roomId;
    bob2.on(sdk.ClientEvent.ToDeviceEvent, (ev) => say(`bob2: SDK processed to-device ${ev.getType()} from ${ev.getSender()}`));
    // The earlier messages were never shared with this device: their UTDs are expected.
    quietUTD = true;
    await step("starting bob2", () => startAndWaitPrepared("bob2", bob2));
    await step("bob2 uploads its keys", () =>
        waitUntil(
            () => syncSeen.bob2?.otkCounts?.signed_curve25519 > 0,
            () => `bob2's /sync to count its one-time keys (device_one_time_keys_count ${JSON.stringify(syncSeen.bob2?.otkCounts)})`,
        ),
    );
    say(`bob2: device ${creds.deviceId} uploaded its keys (device_one_time_keys_count ${JSON.stringify(syncSeen.bob2.otkCounts)})`);
    await step("alice's /sync lists bob in device_lists.changed after his new login", () =>
        waitUntil(
            () => syncSeen.alice?.changedLog.slice(changedBefore).includes(bob.userId),
            () =>
                `alice's /sync to list ${bob.userId} in device_lists.changed again after bob2 logged in ` +
                `(changes since: ${JSON.stringify(syncSeen.alice?.changedLog.slice(changedBefore))}; on another server this takes the m.device_list_update EDU)`,
        ),
    );
    say(`alice: /sync listed ${bob.userId} in device_lists.changed`);
    await step("alice sees bob's second device", () => waitForDevice("alice", aliceClient, creds, bob2Keys));
    if ((endpointStats.get("POST /keys/query")?.ok ?? 0) <= queriesBefore) fail("alice: learnt bob's second device without a /keys/query");
    {
        const devs = (await aliceClient.getCrypto().getUserDeviceInfo([bob.userId])).get(bob.userId);
        if (!devs?.has(bob.deviceId)) fail(`alice: bob's first device ${bob.deviceId} disappeared from her view (devices ${JSON.stringify([...(devs?.keys() ?? [])])})`);
    }
    const claimsBefore2 = claimed.alice?.length ?? 0;
    const aliceText3 = "alice: bob's new device can read this";
    const sent4 = await step("alice: encrypted message after bob's second login", () => aliceClient.sendTextMessage(roomId, aliceText3));
    say(`alice: sent ${sent4.event_id}`);
    const got4 = await step("bob2 decrypts alice's message", () => bob2Obs.waitFor(aliceText3, alice.userId));
    if (got4.getId() !== sent4.event_id) fail(`bob2: decrypted alice's message as ${got4.getId()}, /send returned ${sent4.event_id}`);
    await step("bob's first device decrypts it too", () => bobObs.waitFor(aliceText3, alice.userId));
    quietUTD = false;
    if (!(claimed.alice ?? []).slice(claimsBefore2).some((k) => k.userId === bob.userId && k.deviceId === creds.deviceId)) {
        fail(`alice: no /keys/claim answer carried a key of bob2's device ${creds.deviceId} (claimed since: ${JSON.stringify((claimed.alice ?? []).slice(claimsBefore2))})`);
    }
    if (!syncSeen.bob2?.toDevice.some((e) => e.type === "m.room.encrypted" && e.sender === alice.userId && e.algorithm === "m.olm.v1.curve25519-aes-sha2")) {
        fail(`bob2: no olm-encrypted to-device message from alice came down /sync (to-device seen: ${JSON.stringify(syncSeen.bob2?.toDevice)})`);
    }
    say(`bob2 and bob: decrypted ${got4.getId()} (megolm session ${got4.getWireContent().session_id}, shared with bob2 over /sendToDevice)`);
    bob2.stopClient();
    say("phase 4b: bob's second device: done");
}

// 5. Cross-signing for alice, seen by bob.
if (phases.has("cross-signing")) {
    const aliceCrypto = aliceClient.getCrypto();
    const bobCrypto = bobClient.getCrypto();
    // The UIA callback: first without auth; on a 401 challenge, m.login.password
    // with the challenge's session. Records whether a challenge came.
    const uia = { challenges: 0 };
    const authUpload = async (makeRequest) => {
        const exp = expectHttp("alice", "POST", /\/keys\/device_signing\/upload$/, 401, "UIA challenge");
        let session;
        try {
            await makeRequest(null);
            return;
        } catch (err) {
            if (err?.httpStatus !== 401 || !err.data?.flows) throw err;
            uia.challenges++;
            session = err.data.session;
            const flows = err.data.flows.map((f) => f.stages.join(","));
            if (!err.data.flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.password")) {
                fail(`alice: /keys/device_signing/upload UIA offers flows ${JSON.stringify(flows)}, want one with just m.login.password`);
            }
            say(`alice: UIA challenge: flows ${JSON.stringify(flows)}, session ${session}`);
        } finally {
            const i = expectedHttp.indexOf(exp);
            if (i >= 0) expectedHttp.splice(i, 1);
        }
        await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: alice.userId }, password, session });
        say("alice: UIA with m.login.password accepted");
    };
    // The master key a raw /keys/query (by bob) returns for alice.
    const serverMasterKey = async () => {
        const res = await bobClient.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, { device_keys: { [alice.userId]: [] } });
        const mk = res.master_keys?.[alice.userId];
        return mk ? Object.values(mk.keys)[0] : null;
    };
    // checkCrossSigned checks a cross-signing setup. With local, alice's own client must also
    // hold the private keys and trust its device. After a reset that is left out: the SDK may
    // drop its fresh private keys when a /keys/query it started before the upload answers
    // with the old master key (a client-side race); what the server and bob see is checked.
    const checkCrossSigned = async (label, local, previousMaster) => {
        let masterId;
        if (local) {
            // The SDK caches the new private keys after the upload returns, asynchronously: wait.
            const complete = (st) => st.publicKeysOnDevice && st.privateKeysCachedLocally.masterKey && st.privateKeysCachedLocally.selfSigningKey && st.privateKeysCachedLocally.userSigningKey;
            await step(`alice: cross-signing keys cached after ${label}`, () =>
                waitUntil(
                    async () => complete(await aliceCrypto.getCrossSigningStatus()),
                    async () => `alice's getCrossSigningStatus to show all keys (${JSON.stringify(await aliceCrypto.getCrossSigningStatus())})`,
                ),
            );
            await step(`alice: isCrossSigningReady after ${label}`, () => waitUntil(() => aliceCrypto.isCrossSigningReady(), "alice's isCrossSigningReady() to be true"));
            masterId = await aliceCrypto.getCrossSigningKeyId();
            await step(`alice: her device is cross-signed after ${label}`, () =>
                waitUntil(
                    async () => (await aliceCrypto.getDeviceVerificationStatus(alice.userId, alice.deviceId))?.crossSigningVerified,
                    async () => `alice's own device to be cross-signing verified (${JSON.stringify(await aliceCrypto.getDeviceVerificationStatus(alice.userId, alice.deviceId))})`,
                ),
            );
        } else {
            await step(`the server holds alice's new master key after ${label}`, () =>
                waitUntil(
                    async () => {
                        masterId = await serverMasterKey();
                        return masterId && masterId !== previousMaster;
                    },
                    () => `/keys/query to show a master key other than ${previousMaster} (now ${masterId})`,
                ),
            );
        }
        let lastStatus = "";
        await step(`bob sees alice's cross-signing identity after ${label}`, () =>
            waitUntil(
                async () => {
                    const mk = await serverMasterKey();
                    const has = await bobCrypto.userHasCrossSigningKeys(alice.userId, true);
                    const ds = await bobCrypto.getDeviceVerificationStatus(alice.userId, alice.deviceId);
                    lastStatus =
                        `server /keys/query master key ${mk}, alice's own ${masterId}; bob: userHasCrossSigningKeys ${has}, device status ${JSON.stringify(ds)}; ` +
                        `device_lists.changed seen by bob: ${JSON.stringify([...(syncSeen.bob?.changed ?? [])])}`;
                    return mk === masterId && has && ds?.signedByOwner;
                },
                () => `bob to see alice's master key ${masterId} and her device ${alice.deviceId} signed by its owner (${lastStatus})`,
            ),
        );
        const vs = await bobCrypto.getUserVerificationStatus(alice.userId);
        say(
            `bob: sees alice's cross-signing identity (master ${masterId}) and her device ${alice.deviceId} signed by its owner; ` +
                `getUserVerificationStatus: verified ${vs.isVerified()}, needsUserApproval ${vs.needsUserApproval}`,
        );
        return { masterId, vs };
    };

    await step("alice: bootstrapCrossSigning", () => aliceCrypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: authUpload }));
    say(`alice: bootstrapCrossSigning done (${uia.challenges ? "after a UIA challenge" : "no UIA asked: allowed for the first upload since v1.11"})`);
    expectEndpointOk("POST /keys/device_signing/upload");
    expectEndpointOk("POST /keys/signatures/upload");
    const first = await checkCrossSigned("bootstrap", true);
    if (!syncSeen.bob?.changed.has(alice.userId)) fail("bob: /sync never listed alice in device_lists.changed");

    // Replacing existing keys must go through UIA (spec: MUST unless no master
    // key exists or the request's keys match the stored ones).
    const before = uia.challenges;
    await step("alice: bootstrapCrossSigning({setupNewCrossSigning: true}) with UIA m.login.password", () =>
        aliceCrypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: authUpload }),
    );
    if (uia.challenges === before) {
        fail("alice: /keys/device_signing/upload replaced her existing cross-signing keys with new ones without a UIA challenge (spec: UIA MUST be performed unless no master key exists or the keys are unchanged)");
    }
    const second = await checkCrossSigned("reset", false, first.masterId);
    if (second.masterId === first.masterId) fail(`alice: the reset kept the same master key ${first.masterId}`);
    say(`alice: cross-signing reset: master key ${first.masterId} -> ${second.masterId}; bob's client flags the identity change (needsUserApproval ${second.vs.needsUserApproval})`);
    say("phase 5: cross-signing: done");
}

// 6. Key backup and restore on a new device.
if (phases.has("backup")) {
    const aliceCrypto = aliceClient.getCrypto();
    await step("alice: resetKeyBackup", () => aliceCrypto.resetKeyBackup());
    // resetKeyBackup starts checkKeyBackupAndEnable without waiting for it.
    const check = await step("alice: checkKeyBackupAndEnable", () => aliceCrypto.checkKeyBackupAndEnable());
    if (!check?.backupInfo?.version) fail(`alice: checkKeyBackupAndEnable after resetKeyBackup found no backup: ${JSON.stringify(check)}`);
    if (!check.trustInfo?.trusted || !check.trustInfo?.matchesDecryptionKey) {
        fail(`alice: her new backup ${check.backupInfo.version} is not trusted by her own client: ${JSON.stringify(check.trustInfo)} (auth_data ${JSON.stringify(check.backupInfo.auth_data)})`);
    }
    let version = null;
    await step("alice: backup active", () =>
        waitUntil(
            async () => (version = await aliceCrypto.getActiveSessionBackupVersion()),
            "alice's getActiveSessionBackupVersion() to be set",
        ),
    );
    say(`alice: created key backup version ${version}`);
    // The SDK caches the backup info, so ask the server directly.
    let info = null;
    let stored = null;
    const sessionIds = [got1.getWireContent().session_id, got2.getWireContent().session_id];
    await step("alice: room keys uploaded to the backup", () =>
        waitUntil(
            async () => {
                info = await aliceClient.http.authedRequest(sdk.Method.Get, "/room_keys/version");
                stored = await aliceClient.http.authedRequest(sdk.Method.Get, "/room_keys/keys", { version });
                const sessions = stored?.rooms?.[roomId]?.sessions ?? {};
                // The two reads race with the SDK's upload: wait until they agree (a wrong
                // count never would, and the step times out).
                const n = Object.values(stored?.rooms ?? {}).reduce((a, r) => a + Object.keys(r.sessions ?? {}).length, 0);
                return info?.version === version && sessionIds.every((id) => sessions[id]) && info.count === n;
            },
            () =>
                `the backup ${version} on the server to hold alice's and bob's megolm sessions ${sessionIds.join(", ")} in ${roomId} ` +
                `(GET /room_keys/version: ${JSON.stringify(info)}; GET /room_keys/keys: ${JSON.stringify(stored)?.slice(0, 600)}; ` +
                `PUT /room_keys/keys: ${JSON.stringify(endpointStats.get("PUT /room_keys/keys"))})`,
            STEP_TIMEOUT_MS,
            500, // the SDK waits up to 10s (at random) before its first backup upload
        ),
    );
    expectEndpointOk("PUT /room_keys/keys");
    {
        const n = Object.values(stored.rooms ?? {}).reduce((a, r) => a + Object.keys(r.sessions ?? {}).length, 0);
        if (info.count !== n) fail(`GET /room_keys/version says count ${info.count}, but GET /room_keys/keys holds ${n} sessions (${JSON.stringify(info)})`);
        for (const id of sessionIds) {
            const kd = stored.rooms[roomId].sessions[id];
            if (typeof kd.first_message_index !== "number" || typeof kd.forwarded_count !== "number" || typeof kd.is_verified !== "boolean" || !kd.session_data?.ciphertext) {
                fail(`backup session ${id} is malformed: ${JSON.stringify(kd)}`);
            }
        }
    }
    say(`alice: backup ${version} on the server holds ${info.count} sessions (etag ${info.etag}), including both megolm sessions of the room`);
    const trust = await aliceCrypto.isKeyBackupTrusted(info);
    if (!trust.matchesDecryptionKey) fail(`alice: the backup on the server does not match her backup key: ${JSON.stringify(trust)} (info ${JSON.stringify(info)})`);
    const backupKey = await aliceCrypto.getSessionBackupPrivateKey();
    if (!backupKey) fail("alice: no backup private key cached");

    const creds = await step("alice2: loginRequest", () => login("alice2", localpartOf(alice.userId)));
    const alice2 = newClient("alice2", creds);
    await step("alice2: initRustCrypto", () => initCrypto("alice2", alice2));
    const alice2Obs = new Observer("alice2", alice2);
    quietUTD = true;
    alice2Obs.roomId = roomId;
    await step("starting alice2", () => startAndWaitPrepared("alice2", alice2));
    const room = alice2.getRoom(roomId);
    if (!room) fail(`alice2: room ${roomId} not in the initial sync`);
    const encIds = [sent1.event_id, sent2.event_id, sent3.event_id];
    const evs = () => encIds.map((id) => room.findEventById(id));
    if (evs().some((e) => !e)) {
        fail(`alice2: the initial sync's timeline lacks ${encIds.filter((id) => !room.findEventById(id)).join(", ")}`);
    }
    for (const e of evs()) {
        await step(`alice2: decryption attempt of ${e.getId()}`, () => waitUntil(() => !e.isBeingDecrypted() && (e.isDecryptionFailure() || e.getClearContent()), `${e.getId()} to be tried`));
        if (!e.isDecryptionFailure()) fail(`alice2: ${e.getId()} decrypted before the backup was restored (${JSON.stringify(e.getClearContent())})`);
    }
    say(`alice2: sees ${encIds.length} encrypted messages it cannot decrypt yet (${evs()[0].decryptionFailureReason})`);

    await step("alice2: storeSessionBackupPrivateKey", () => alice2.getCrypto().storeSessionBackupPrivateKey(backupKey, version));
    const restored = await step("alice2: restoreKeyBackup", () => alice2.getCrypto().restoreKeyBackup());
    quietUTD = false;
    say(`alice2: restoreKeyBackup: total ${restored.total}, imported ${restored.imported}`);
    if (restored.total < 2 || restored.imported < 2) fail(`alice2: restoreKeyBackup gave ${JSON.stringify(restored)}, want at least 2 keys`);
    const want = [aliceText, bobText, aliceText2];
    await step("alice2 decrypts the history with the restored keys", () =>
        waitUntil(
            () => evs().every((e, i) => e.getClearContent()?.body === want[i]),
            () => `alice2 to decrypt ${encIds.join(", ")} (state: ${evs().map((e) => (e.isDecryptionFailure() ? "UTD" : JSON.stringify(e.getClearContent()?.body))).join(", ")})`,
        ),
    );
    say(`alice2: decrypted ${encIds.length} earlier messages with keys restored from backup ${version}`);
    alice2.stopClient();
    say("phase 6: key backup: done");
}

// 7. Transcript.
for (const ep of [
    "POST /keys/upload",
    "POST /keys/query",
    "POST /keys/claim",
    ...(phases.has("cross-signing") ? ["POST /keys/device_signing/upload", "POST /keys/signatures/upload"] : []),
    ...(phases.has("backup") ? ["POST /room_keys/version", "PUT /room_keys/keys"] : []),
]) {
    expectEndpointOk(ep);
}
const leftover = expectedHttp.filter((e) => e.seen === 0);
if (httpFailures.length > 0) fail(`${httpFailures.length} unexpected non-2xx response(s), listed below`);
finished = true;
printHttpSummary();
if (leftover.length) say(`note: expected-but-unseen answers: ${leftover.map((e) => e.why).join(", ")}`);
stopAll();
say("PASS");
process.exit(0);
