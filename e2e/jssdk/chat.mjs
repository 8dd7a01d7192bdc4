// chat.mjs drives the real matrix-js-sdk against a running lattice server.
//
// It is started by ../jssdk_test.go (TestMatrixJSSDK), which registers alice and
// bob over plain HTTP and passes their credentials here:
//
//   LATTICE_URL                              homeserver base URL (http://127.0.0.1:PORT)
//   ALICE_USER, ALICE_TOKEN, ALICE_DEVICE    alice's user ID, access token, device ID
//   BOB_USER, BOB_TOKEN, BOB_DEVICE          bob's
//   LATTICE_PASSWORD                         both accounts' password (for the SDK's own /login)
//   LATTICE_JSSDK_MESSAGES                   ping-pong rounds (default 30: 30 messages each)
//   LATTICE_JSSDK_BURST                      concurrent messages each afterwards (default 10)
//   LATTICE_JSSDK_TRACE=1                    print every HTTP request the SDK makes
//   LATTICE_JSSDK_SDK_LOG=1                  let the SDK's own debug/info logging through
//
// What it checks:
//   1. alice and bob start their sync loops (startClient) and reach PREPARED;
//   2. alice creates a room inviting bob; bob joins when his sync shows the invite;
//   3. ping-pong: alice sends, bob waits to see it over /sync, bob answers, alice
//      waits to see that; then both send a burst at the same time. Each client must
//      see every message of the other exactly once, in the order it was sent;
//   4. a new bob device (logged in by the SDK with loginRequest) starts with a
//      small initialSyncLimit and walks back with client.scrollback until it
//      reaches m.room.create; a new alice device does the same with
//      paginateEventTimeline (timelineSupport). Both must find every message, in
//      the order /sync delivered them live, and the room's m.room.create first.
//
//   5. media, receipts, typing, edits and reactions, each observed by the other
//      client through its own sync loop:
//      a. alice uploads a small PNG (uploadContent) and sends it as m.image; bob
//         sees the event, downloads the media from the authenticated endpoint
//         (/_matrix/client/v1/media/download, as mxcUrlToHttp builds it) byte for
//         byte, and fetches thumbnails (scale and crop) that must be PNG or JPEG;
//      b. bob sends an m.read receipt for alice's m.image (sendReadReceipt) and
//         alice's client shows it (getReadReceiptForUserId, getUsersReadUpTo);
//      c. alice starts typing (sendTyping) and bob's client sees her typing, then
//         sees her stop;
//      d. alice edits a message (m.replace) and bob reacts to it (m.annotation):
//         both clients apply the edit and count the reaction; /event and
//         /messages bundle the edit under unsigned.m.relations.m.replace;
//         /relations lists the reaction; a second identical reaction from bob is
//         refused with 400 M_DUPLICATE_ANNOTATION; a new bob device's first
//         (limited) sync shows the edit applied and the reaction counted.
//
// Any failure prints "FAIL: ..." and exits 1; success prints "PASS" and exits 0.
// Every non-2xx HTTP response the SDK got is printed as it happens and summarised
// at the end, with method, path, status and body.

import * as sdk from "matrix-js-sdk";
import zlib from "node:zlib";
import { isDeepStrictEqual } from "node:util";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const OVERALL_TIMEOUT_MS = 120_000;
const STEP_TIMEOUT_MS = 20_000;

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
    printHttpFailures();
    stopAll();
    process.exit(1);
}

setTimeout(() => fail(`overall timeout of ${OVERALL_TIMEOUT_MS / 1000}s exceeded`), OVERALL_TIMEOUT_MS);
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${describeErr(err)}`));
process.on("uncaughtException", (err) => fail(`uncaught exception: ${describeErr(err)}`));

// The SDK logs through loglevel, which looks console methods up at call time, so
// quieting console.debug/info/log here quiets its chatter. Our own output goes
// through say(). Warnings and errors stay, prefixed.
if (!process.env.LATTICE_JSSDK_SDK_LOG) {
    console.debug = () => {};
    console.info = () => {};
    console.log = () => {};
    console.trace = () => {};
}
const origWarn = console.warn.bind(console);
const origError = console.error.bind(console);
// Errors are shown as one line (status, errcode, message) rather than a dump.
const brief = (a) => (a instanceof Error ? describeErr(a).split("\n")[0] : a);
console.warn = (...a) => origWarn("sdk warn:", ...a.map(brief));
// The SDK's MatrixRTC manager logs this at error level for every state event of a
// room it has not stored yet (each new room); it is noise, not a failure.
const noise = /^\[MatrixRTCSessionManager\] Got room state event for unknown room/;
console.error = (...a) => {
    // The SDK's child loggers may pass their "[Prefix]" as a separate argument.
    const text = a.filter((x) => typeof x === "string").join(" ");
    if (noise.test(text)) return;
    // The SDK logs every failed send; one a step provoked on purpose is not news.
    if (typeof a[0] === "string" && a[0].startsWith("Error sending event") && expectedSendErrcodes.has(a[1]?.errcode)) return;
    origError("sdk error:", ...a.map(brief));
};

// errcodes of sends a step expects to fail (see expectHttp); the SDK's error log
// for them is dropped.
const expectedSendErrcodes = new Set();

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
const password = env("LATTICE_PASSWORD", "correct horse battery");
const ROUNDS = Number(env("LATTICE_JSSDK_MESSAGES", "30"));
const BURST = Number(env("LATTICE_JSSDK_BURST", "10"));
const TRACE = !!process.env.LATTICE_JSSDK_TRACE;

// ---------------------------------------------------------------------------
// HTTP logging: every request the SDK makes goes through this fetch.

const httpFailures = [];
function makeFetch(name) {
    return async (input, init = {}) => {
        const method = (init.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
        const u = new URL(input instanceof Request ? input.url : input.toString());
        const path = u.pathname + (u.search ? u.search.replace(/access_token=[^&]*/, "access_token=REDACTED") : "");
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
        if (!res.ok) {
            let body = "";
            try {
                body = await res.clone().text();
            } catch {
                // ignore
            }
            if (body.length > 500) body = body.slice(0, 500) + "...";
            const exp = takeExpectedHttp(name, method, u.pathname, res.status, body);
            if (exp) {
                say(`http ${name}: ${method} ${path} -> ${res.status} ${body.replace(/\s+/g, " ")} (expected: ${exp.why})`);
            } else {
                httpFailures.push({ client: name, method, path, status: res.status, body });
                say(`http ${name}: ${method} ${path} -> ${res.status} ${body.replace(/\s+/g, " ")}`);
            }
        } else if (TRACE) {
            say(`http ${name}: ${method} ${path} -> ${res.status} (${ms}ms)`);
        }
        return res;
    };
}

// Non-2xx answers a step provokes on purpose (e.g. a duplicate reaction's 400):
// each entry excuses one matching response, which is then not counted as a failure.
const expectedHttp = [];
let expectedHttpSeen = 0;
function expectHttp(client, method, pathRe, status, errcode, why) {
    const e = { client, method, pathRe, status, errcode, why, seen: 0 };
    expectedHttp.push(e);
    return e;
}
function takeExpectedHttp(client, method, pathname, status, body) {
    let errcode;
    try {
        errcode = JSON.parse(body)?.errcode;
    } catch {
        // not JSON
    }
    const i = expectedHttp.findIndex(
        (e) => e.client === client && e.method === method && e.pathRe.test(pathname) && e.status === status && e.errcode === errcode,
    );
    if (i < 0) return null;
    const [e] = expectedHttp.splice(i, 1);
    e.seen++;
    expectedHttpSeen++;
    return e;
}

function printHttpFailures() {
    if (httpFailures.length === 0) {
        const but = expectedHttpSeen ? ` (apart from ${expectedHttpSeen} expected non-2xx answer(s), shown above)` : "";
        say(`http: every request the SDK made got a 2xx answer${but}`);
        return;
    }
    say(`http: ${httpFailures.length} non-2xx response(s) the SDK got:`);
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
            // `what` may be a function, called at timeout to describe what was seen.
            const desc = () => (typeof what === "function" ? what() : what);
            timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s waiting for ${desc()}`)), ms);
        }),
    ]).finally(() => clearTimeout(timer));
}

// Polls pred every 25ms until it holds; the SDK updates its models after emitting
// some events, so polling is simpler than picking the right event.
function waitUntil(pred, what, ms = STEP_TIMEOUT_MS) {
    let done = false;
    return withTimeout(
        new Promise((resolve) => {
            const tick = () => (pred() ? resolve() : done || setTimeout(tick, 25));
            tick();
        }),
        ms,
        what,
    ).finally(() => (done = true));
}

async function step(what, fn) {
    try {
        return await fn();
    } catch (err) {
        fail(`${what}: ${describeErr(err)}`);
        // fail exits; keep the type checker (and readers) happy.
        throw err;
    }
}

function newClient(name, { userId, accessToken, deviceId }, extra = {}) {
    const client = sdk.createClient({
        baseUrl,
        userId,
        accessToken,
        deviceId,
        fetchFn: makeFetch(name),
        ...extra,
    });
    clients.push(client);
    return client;
}

// Starts the sync loop and resolves once the client reports PREPARED.
function startAndWaitPrepared(name, client, initialSyncLimit) {
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, prev, data) => {
            if (TRACE || state !== "SYNCING" || prev !== "SYNCING") {
                if (state !== prev) say(`${name}: sync state ${prev ?? "null"} -> ${state}`);
            }
            if (state === "PREPARED") resolve();
            if (state === "ERROR") {
                const msg = `${name}: sync loop reported ERROR: ${describeErr(data?.error)}`;
                if (finished) return;
                reject(new Error(msg));
                fail(msg);
            }
        });
    });
    // Only the first /sync uses initialSyncLimit; later ones use this filter, with
    // a limit high enough that no burst in this script makes a sync "limited".
    const filter = new sdk.Filter(client.getUserId());
    filter.setTimelineLimit(100);
    return client
        .startClient({
            initialSyncLimit,
            filter,
            // Own messages enter the timeline only when /sync returns them, so the
            // live timeline is in server order.
            pendingEventOrdering: sdk.PendingEventOrdering.Detached,
        })
        .then(() => withTimeout(prepared, STEP_TIMEOUT_MS, `${name}'s first sync (PREPARED)`));
}

function body(ev) {
    return ev.getContent()?.body;
}

function isMessage(ev) {
    return ev.getType() === "m.room.message";
}

// Observer records, for one client, the messages that reach its live timeline
// for one room through its own sync loop.
class Observer {
    constructor(name, client, selfId) {
        this.name = name;
        this.client = client;
        this.selfId = selfId;
        this.roomId = null;
        this.live = []; // every live m.room.message event, in arrival order: {id, sender, body}
        this.seen = new Set();
        this.waiters = [];
        this.resets = 0;
        client.on(sdk.RoomEvent.Timeline, (ev, room, toStart, removed, data) => {
            if (!room || room.roomId !== this.roomId || toStart || removed) return;
            if (!data?.liveEvent) return;
            if (!isMessage(ev)) return;
            const id = ev.getId();
            if (!id || id.startsWith("~") || ev.status) return; // local echo
            if (this.seen.has(id)) {
                fail(`${this.name} received event ${id} (${JSON.stringify(body(ev))}) twice`);
                return;
            }
            this.seen.add(id);
            this.live.push({ id, sender: ev.getSender(), body: body(ev) });
            this.check();
        });
        client.on(sdk.RoomEvent.TimelineReset, (room) => {
            if (room && room.roomId === this.roomId) {
                this.resets++;
                say(`${this.name}: live timeline was reset (a /sync came back limited)`);
            }
        });
    }

    fromOther() {
        return this.live.filter((m) => m.sender !== this.selfId);
    }

    has(bodyText, sender) {
        return this.live.some((m) => m.body === bodyText && m.sender === sender);
    }

    waitFor(bodyText, sender, what) {
        if (this.has(bodyText, sender)) return Promise.resolve();
        const p = new Promise((resolve) => this.waiters.push({ bodyText, sender, resolve }));
        return withTimeout(p, STEP_TIMEOUT_MS, `${this.name} to see ${what ?? JSON.stringify(bodyText)}`);
    }

    check() {
        this.waiters = this.waiters.filter((w) => {
            if (this.has(w.bodyText, w.sender)) {
                w.resolve();
                return false;
            }
            return true;
        });
    }
}

// Asserts that a sequence of bodies is exactly the expected one.
function assertSequence(what, got, want) {
    const n = Math.max(got.length, want.length);
    for (let i = 0; i < n; i++) {
        if (got[i] !== want[i]) {
            const ctx = (arr) => JSON.stringify(arr.slice(Math.max(0, i - 2), i + 3));
            fail(
                `${what}: position ${i}: got ${JSON.stringify(got[i])}, want ${JSON.stringify(want[i])} ` +
                    `(got ${got.length} items, want ${want.length}; around it got ${ctx(got)}, want ${ctx(want)})`,
            );
        }
    }
}

// Asserts that `sub` (event IDs) appears in `full` in the same relative order.
function assertSubsequence(what, sub, full) {
    const pos = new Map(full.map((id, i) => [id, i]));
    let last = -1;
    for (const id of sub) {
        const p = pos.get(id);
        if (p === undefined) fail(`${what}: event ${id} seen live is missing from the history`);
        if (p <= last) fail(`${what}: event ${id} is at history position ${p}, before an event seen live earlier (position ${last})`);
        last = p;
    }
}

// ---------------------------------------------------------------------------
// The scenario.

const alice = {
    userId: env("ALICE_USER"),
    accessToken: env("ALICE_TOKEN"),
    deviceId: env("ALICE_DEVICE"),
};
const bob = {
    userId: env("BOB_USER"),
    accessToken: env("BOB_TOKEN"),
    deviceId: env("BOB_DEVICE"),
};

say(`matrix-js-sdk against ${baseUrl}: alice=${alice.userId} bob=${bob.userId}, ${ROUNDS} ping-pong rounds, burst ${BURST}`);

const aliceClient = newClient("alice", alice);
const bobClient = newClient("bob", bob);
const aliceObs = new Observer("alice", aliceClient, alice.userId);
const bobObs = new Observer("bob", bobClient, bob.userId);

// Bob joins every room he is invited to, as soon as his sync shows the invite.
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

await step("starting alice and bob", () =>
    Promise.all([startAndWaitPrepared("alice", aliceClient, 10), startAndWaitPrepared("bob", bobClient, 10)]),
);
say("alice and bob: PREPARED");

const { room_id: roomId } = await step("alice: createRoom", () =>
    aliceClient.createRoom({
        name: "js-sdk e2e",
        preset: sdk.Preset.PrivateChat,
        invite: [bob.userId],
    }),
);
aliceObs.roomId = roomId;
bobObs.roomId = roomId;
say(`alice: created ${roomId}, invited bob`);

// Bob's sync shows him joined, and alice's shows bob as a joined member.
await step("bob joins", () =>
    waitUntil(
        () =>
            bobClient.getRoom(roomId)?.getMyMembership() === "join" &&
            aliceClient.getRoom(roomId)?.getMember(bob.userId)?.membership === "join",
        "bob to be joined in both clients' view of the room",
    ),
);
say("bob: joined; both clients see it");

// Ping-pong: each message is seen by the other side before it answers.
// (A reset while joining is allowed: a join may come down /sync as limited.)
aliceObs.resets = 0;
bobObs.resets = 0;
const sentIds = new Map(); // body -> event_id returned by /send
for (let i = 0; i < ROUNDS; i++) {
    const a = `alice ${i}`;
    const r1 = await step(`alice: send ${JSON.stringify(a)}`, () => aliceClient.sendTextMessage(roomId, a));
    sentIds.set(a, r1.event_id);
    await step("bob receives", () => bobObs.waitFor(a, alice.userId));
    const b = `bob ${i}`;
    const r2 = await step(`bob: send ${JSON.stringify(b)}`, () => bobClient.sendTextMessage(roomId, b));
    sentIds.set(b, r2.event_id);
    await step("alice receives", () => aliceObs.waitFor(b, bob.userId));
    if ((i + 1) % 10 === 0 || i === ROUNDS - 1) say(`ping-pong: ${i + 1}/${ROUNDS} rounds`);
}

// Burst: both send at once, without waiting for each other.
const sendBurst = async (name, client) => {
    for (let j = 0; j < BURST; j++) {
        const text = `${name} burst ${j}`;
        const r = await client.sendTextMessage(roomId, text);
        sentIds.set(text, r.event_id);
    }
};
await step("concurrent burst", () =>
    Promise.all([sendBurst("alice", aliceClient), sendBurst("bob", bobClient)]),
);
say(`burst: ${BURST} each sent concurrently`);
if (BURST > 0) {
    await step("burst delivery", () =>
        Promise.all([
            bobObs.waitFor(`alice burst ${BURST - 1}`, alice.userId),
            aliceObs.waitFor(`bob burst ${BURST - 1}`, bob.userId),
        ]),
    );
}

// Each side saw every message of the other, once, in send order, with the
// event ID the sender's /send returned.
const expectFrom = (name) => [
    ...Array.from({ length: ROUNDS }, (_, i) => `${name} ${i}`),
    ...Array.from({ length: BURST }, (_, j) => `${name} burst ${j}`),
];
for (const [obs, otherName] of [
    [bobObs, "alice"],
    [aliceObs, "bob"],
]) {
    const got = obs.fromOther();
    assertSequence(`${obs.name}'s live view of ${otherName}'s messages`, got.map((m) => m.body), expectFrom(otherName));
    for (const m of got) {
        if (sentIds.get(m.body) !== m.id) {
            fail(`${obs.name} saw ${JSON.stringify(m.body)} as ${m.id}, but /send returned ${sentIds.get(m.body)}`);
        }
    }
    if (obs.resets > 0) fail(`${obs.name}'s live timeline was reset ${obs.resets} time(s) during the exchange, although with a timeline limit of 100 no /sync should be limited`);
    say(`${obs.name}: saw all ${got.length} of ${otherName}'s messages live, once each, in order`);
}

// Both live timelines (own messages enter them as /sync returns them, since
// pending events are detached) must hold every message once, in the same order.
const liveTimelineIds = {};
for (const [name, client] of [
    ["alice", aliceClient],
    ["bob", bobClient],
]) {
    const evs = client.getRoom(roomId).getLiveTimeline().getEvents().filter(isMessage);
    const want = 2 * (ROUNDS + BURST);
    await step(`${name}'s live timeline to hold all ${want} messages`, () =>
        waitUntil(
            () => client.getRoom(roomId).getLiveTimeline().getEvents().filter(isMessage).length >= want,
            `${name}'s live timeline to hold all ${want} messages, own ones included (it has ${evs.length})`,
        ),
    );
    const ids = client.getRoom(roomId).getLiveTimeline().getEvents().filter(isMessage).map((e) => e.getId());
    if (new Set(ids).size !== ids.length) fail(`${name}'s live timeline holds a message twice`);
    if (ids.length !== want) fail(`${name}'s live timeline holds ${ids.length} messages, want ${want}`);
    liveTimelineIds[name] = ids;
}
assertSequence("alice's live timeline vs bob's (event IDs)", liveTimelineIds.alice, liveTimelineIds.bob);
say(`alice and bob: live timelines hold the same ${liveTimelineIds.alice.length} messages in the same order`);
const aliceLiveIds = aliceObs.live.map((m) => m.id);
const bobLiveIds = bobObs.live.map((m) => m.id);

// Expected full history: ping-pong strictly alternates; the burst only keeps
// each sender's order, so compare it per sender and against the live orders.
const pingPong = [];
for (let i = 0; i < ROUNDS; i++) pingPong.push(`alice ${i}`, `bob ${i}`);

async function checkHistory(name, client, events) {
    if (events.length === 0) fail(`${name}: history is empty`);
    const first = events[0];
    if (first.getType() !== "m.room.create") {
        fail(`${name}: history starts with ${first.getType()} (${first.getId()}), want m.room.create`);
    }
    const ids = events.map((e) => e.getId());
    const dup = ids.find((id, i) => ids.indexOf(id) !== i);
    if (dup) fail(`${name}: event ${dup} appears twice in the paginated history`);
    const msgs = events.filter(isMessage);
    const bodies = msgs.map(body);
    assertSequence(`${name}: ping-pong part of the history`, bodies.slice(0, pingPong.length), pingPong);
    const rest = msgs.slice(pingPong.length);
    for (const who of ["alice", "bob"]) {
        const uid = who === "alice" ? alice.userId : bob.userId;
        assertSequence(
            `${name}: ${who}'s burst in the history`,
            rest.filter((e) => e.getSender() === uid).map(body),
            Array.from({ length: BURST }, (_, j) => `${who} burst ${j}`),
        );
    }
    if (rest.length !== 2 * BURST) fail(`${name}: history has ${rest.length} messages after the ping-pong, want ${2 * BURST}`);
    for (const e of msgs) {
        if (sentIds.get(body(e)) !== e.getId()) {
            fail(`${name}: history has ${JSON.stringify(body(e))} as ${e.getId()}, but /send returned ${sentIds.get(body(e))}`);
        }
    }
    const msgIds = msgs.map((e) => e.getId());
    assertSubsequence(`${name} vs the order alice's sync delivered bob's messages`, aliceLiveIds, msgIds);
    assertSubsequence(`${name} vs the order bob's sync delivered alice's messages`, bobLiveIds, msgIds);
    assertSequence(`${name}: history vs the live timelines (event IDs)`, msgIds, liveTimelineIds.alice);
    say(`${name}: history has m.room.create first and all ${msgs.length} messages in order (${events.length} events in all)`);
}

async function login(name) {
    const localpart = name;
    const anon = sdk.createClient({ baseUrl, fetchFn: makeFetch(`${name}-login`) });
    const res = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password,
        initial_device_display_name: `js-sdk e2e ${name}`,
    });
    say(`${name}: logged in again as ${res.user_id}, device ${res.device_id}`);
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

// A new bob device: small initial sync, then client.scrollback to the start.
{
    const creds = await step("bob2: loginRequest", () => login(bobLocalpart()));
    const bob2 = newClient("bob2", creds);
    await step("starting bob2", () => startAndWaitPrepared("bob2", bob2, 5));
    const room = bob2.getRoom(roomId);
    if (!room) fail(`bob2: room ${roomId} not in the initial sync`);
    const initial = room.getLiveTimeline().getEvents().length;
    say(`bob2: initial sync gave ${initial} timeline events; scrolling back`);
    let calls = 0;
    const hasCreate = () => room.getLiveTimeline().getEvents().some((e) => e.getType() === "m.room.create");
    while (!hasCreate()) {
        if (room.oldState.paginationToken === null) fail("bob2: scrollback reached the start of the room without seeing m.room.create");
        if (++calls > 100) fail("bob2: no m.room.create after 100 scrollback calls");
        const before = room.getLiveTimeline().getEvents().length;
        await step(`bob2: scrollback #${calls}`, () => withTimeout(bob2.scrollback(room, 20), STEP_TIMEOUT_MS, "scrollback"));
        const after = room.getLiveTimeline().getEvents().length;
        if (after === before && !hasCreate() && room.oldState.paginationToken !== null) {
            fail(`bob2: scrollback #${calls} added no events but gave a pagination token again`);
        }
    }
    say(`bob2: reached m.room.create after ${calls} scrollback call(s)`);
    await checkHistory("bob2 (scrollback)", bob2, room.getLiveTimeline().getEvents());
    bob2.stopClient();
}

// A new alice device: timelineSupport and paginateEventTimeline to the start.
{
    const creds = await step("alice2: loginRequest", () => login(aliceLocalpart()));
    const alice2 = newClient("alice2", creds, { timelineSupport: true });
    await step("starting alice2", () => startAndWaitPrepared("alice2", alice2, 5));
    const room = alice2.getRoom(roomId);
    if (!room) fail(`alice2: room ${roomId} not in the initial sync`);
    const tl = room.getLiveTimeline();
    let calls = 0;
    let more = true;
    const hasCreate = () => tl.getEvents().some((e) => e.getType() === "m.room.create");
    while (!hasCreate()) {
        if (!more) fail("alice2: paginateEventTimeline says the start is reached but no m.room.create was seen");
        if (++calls > 100) fail("alice2: no m.room.create after 100 paginateEventTimeline calls");
        more = await step(`alice2: paginateEventTimeline #${calls}`, () =>
            withTimeout(alice2.paginateEventTimeline(tl, { backwards: true, limit: 20 }), STEP_TIMEOUT_MS, "paginateEventTimeline"),
        );
    }
    say(`alice2: reached m.room.create after ${calls} paginateEventTimeline call(s)`);
    // Past the start, the server must say so (no `end`), or the SDK never knows it is done.
    if (more) {
        more = await step("alice2: paginateEventTimeline past the start", () =>
            withTimeout(alice2.paginateEventTimeline(tl, { backwards: true, limit: 20 }), STEP_TIMEOUT_MS, "paginateEventTimeline"),
        );
        if (more) fail("alice2: /messages past m.room.create still returned an `end` token (the spec says to omit it at the start)");
    }
    await checkHistory("alice2 (paginateEventTimeline)", alice2, tl.getEvents());
    alice2.stopClient();
}

// ---------------------------------------------------------------------------
// Phase 5: media, read receipts, typing, edits and reactions. alice and bob are
// still syncing; every step waits for the other client's sync to show it.

say("phase 5: media, read receipts, typing, edits and reactions");
const aliceRoom = () => aliceClient.getRoom(roomId);
const bobRoom = () => bobClient.getRoom(roomId);
const bobFetch = makeFetch("bob");

// 5a. Media: upload, m.image, authenticated download and thumbnails.
const PNG_W = 8;
const PNG_H = 6;
const png = makePng(PNG_W, PNG_H);
const imageName = "lattice-e2e.png";
const uploaded = await step("alice: uploadContent", () =>
    withTimeout(aliceClient.uploadContent(png, { name: imageName, type: "image/png" }), STEP_TIMEOUT_MS, "uploadContent"),
);
const mxc = uploaded?.content_uri;
if (typeof mxc !== "string" || !/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/.test(mxc)) {
    fail(`alice: uploadContent answered ${JSON.stringify(uploaded)}, want content_uri mxc://<server-name>/<media-id>`);
}
say(`alice: uploaded a ${png.length}-byte ${PNG_W}x${PNG_H} PNG as ${mxc}`);
const imageContent = {
    msgtype: "m.image",
    body: imageName,
    url: mxc,
    info: { mimetype: "image/png", size: png.length, w: PNG_W, h: PNG_H },
};
const imageSent = await step("alice: send m.image", () => aliceClient.sendMessage(roomId, imageContent));
await step("bob receives the m.image", () => bobObs.waitFor(imageName, alice.userId, `alice's m.image ${imageSent.event_id}`));
const bobImage = bobRoom().findEventById(imageSent.event_id);
if (!bobImage) fail(`bob: saw alice's m.image live but cannot find ${imageSent.event_id} in the room`);
{
    const c = bobImage.getContent();
    if (!isDeepStrictEqual(c, imageContent)) {
        fail(`bob: m.image ${imageSent.event_id} content is ${JSON.stringify(c)}, alice sent ${JSON.stringify(imageContent)}`);
    }
}
say(`bob: got alice's m.image ${imageSent.event_id} through sync`);

const downloadUrl = bobClient.mxcUrlToHttp(bobImage.getContent().url, undefined, undefined, undefined, false, true, true);
if (!downloadUrl || !new URL(downloadUrl).pathname.startsWith("/_matrix/client/v1/media/download/")) {
    fail(`bob: mxcUrlToHttp(${mxc}, useAuthentication) gave ${JSON.stringify(downloadUrl)}, want a /_matrix/client/v1/media/download/ URL`);
}
const authHeaders = { Authorization: `Bearer ${bob.accessToken}` };
{
    const res = await step(`bob: GET ${downloadUrl}`, () =>
        withTimeout(bobFetch(downloadUrl, { headers: authHeaders }), STEP_TIMEOUT_MS, "the media download"),
    );
    const got = Buffer.from(await res.arrayBuffer());
    if (!res.ok) fail(`bob: GET ${downloadUrl} -> ${res.status} ${got.toString().slice(0, 300)}`);
    const ct = res.headers.get("content-type") ?? "";
    if (!got.equals(png)) {
        let i = 0;
        while (i < Math.min(got.length, png.length) && got[i] === png[i]) i++;
        fail(`bob: downloaded ${got.length} bytes (content-type ${ct}), uploaded ${png.length}; they first differ at byte ${i}`);
    }
    if (!/^image\/png\b/i.test(ct)) {
        fail(`bob: download of ${mxc} has Content-Type ${JSON.stringify(ct)}, want image/png (the type it was uploaded with)`);
    }
    say(`bob: downloaded ${mxc} from ${new URL(downloadUrl).pathname}: ${got.length} bytes, identical, ${ct}`);
}
for (const [w, h, method] of [
    [32, 32, "scale"],
    [4, 4, "crop"],
]) {
    const url = bobClient.mxcUrlToHttp(mxc, w, h, method, false, true, true);
    if (!url || !new URL(url).pathname.startsWith("/_matrix/client/v1/media/thumbnail/")) {
        fail(`bob: mxcUrlToHttp(${mxc}, ${w}, ${h}, ${method}, useAuthentication) gave ${JSON.stringify(url)}, want a /_matrix/client/v1/media/thumbnail/ URL`);
    }
    const res = await step(`bob: GET ${url}`, () => withTimeout(bobFetch(url, { headers: authHeaders }), STEP_TIMEOUT_MS, "a thumbnail"));
    const got = Buffer.from(await res.arrayBuffer());
    if (!res.ok) fail(`bob: GET ${url} -> ${res.status} ${got.toString().slice(0, 300)}`);
    const ct = res.headers.get("content-type") ?? "";
    const isPng = got.subarray(0, 8).equals(PNG_SIGNATURE);
    const isJpeg = got.length > 3 && got[0] === 0xff && got[1] === 0xd8 && got[2] === 0xff;
    if (!/^image\/(png|jpeg)\b/i.test(ct)) fail(`bob: thumbnail ${w}x${h} ${method} has Content-Type ${JSON.stringify(ct)}, want image/png or image/jpeg`);
    if (/png/i.test(ct) ? !isPng : !isJpeg) {
        fail(`bob: thumbnail ${w}x${h} ${method} says ${ct} but its ${got.length} bytes start ${got.subarray(0, 8).toString("hex")}`);
    }
    const dims = isPng ? ` ${got.readUInt32BE(16)}x${got.readUInt32BE(20)}` : "";
    say(`bob: thumbnail ${w}x${h} ${method}: ${ct}, ${got.length} bytes${dims}`);
}

// 5b. Read receipt: bob has read alice's m.image (her latest message).
await step("bob: sendReadReceipt", () =>
    withTimeout(bobClient.sendReadReceipt(bobImage), STEP_TIMEOUT_MS, "sendReadReceipt"),
);
say(`bob: sent an m.read receipt for ${imageSent.event_id}`);
const receiptEvents = [];
aliceClient.on(sdk.RoomEvent.Receipt, (ev, room) => {
    if (room?.roomId === roomId) receiptEvents.push(ev.getContent());
});
await step("alice sees bob's read receipt", () =>
    waitUntil(
        () => aliceRoom().getReadReceiptForUserId(bob.userId, true, sdk.ReceiptType.Read)?.eventId === imageSent.event_id,
        () =>
            `alice's client to show bob's m.read receipt on ${imageSent.event_id} ` +
            `(it shows ${JSON.stringify(aliceRoom().getReadReceiptForUserId(bob.userId, true, sdk.ReceiptType.Read))}; ` +
            `m.receipt contents seen: ${JSON.stringify(receiptEvents)})`,
    ),
);
{
    const aliceImage = aliceRoom().findEventById(imageSent.event_id);
    const readers = aliceImage ? aliceRoom().getUsersReadUpTo(aliceImage) : [];
    if (!readers.includes(bob.userId)) fail(`alice: getUsersReadUpTo(${imageSent.event_id}) is ${JSON.stringify(readers)}, want it to include ${bob.userId}`);
    say(`alice: sees bob's m.read receipt on ${imageSent.event_id} (read up to it: ${readers.join(", ")})`);
}

// 5c. Typing: alice starts, bob sees it; alice stops, bob sees that.
const typingSeen = [];
bobClient.on(sdk.RoomMemberEvent.Typing, (ev, member) => {
    if (member.roomId === roomId && member.userId === alice.userId) typingSeen.push(member.typing);
});
const aliceTyping = () => bobRoom().getMember(alice.userId)?.typing;
await step("alice: sendTyping(true)", () => withTimeout(aliceClient.sendTyping(roomId, true, 10000), STEP_TIMEOUT_MS, "sendTyping"));
await step("bob sees alice typing", () =>
    waitUntil(() => aliceTyping() === true, () => `bob's client to show alice typing (member.typing is ${aliceTyping()})`),
);
say("bob: sees alice typing");
await step("alice: sendTyping(false)", () => withTimeout(aliceClient.sendTyping(roomId, false), STEP_TIMEOUT_MS, "sendTyping"));
await step("bob sees alice stop typing", () =>
    waitUntil(
        () => aliceTyping() === false,
        () => `bob's client to show alice no longer typing (member.typing is ${aliceTyping()}; RoomMember.typing events: ${JSON.stringify(typingSeen)})`,
    ),
);
if (!typingSeen.includes(true) || typingSeen[typingSeen.length - 1] !== false) {
    fail(`bob: RoomMember.typing events for alice were ${JSON.stringify(typingSeen)}, want a true then a false`);
}
say(`bob: sees alice stop typing (RoomMember.typing events: ${JSON.stringify(typingSeen)})`);

// 5d. Edit and reaction.
const origText = "alice: this message will be edited";
const newText = "alice: this message was edited";
const orig = await step("alice: send the message to edit", () => aliceClient.sendTextMessage(roomId, origText));
await step("bob receives the message to edit", () => bobObs.waitFor(origText, alice.userId));
const edit = await step("alice: send the edit", () =>
    aliceClient.sendMessage(roomId, {
        msgtype: "m.text",
        body: `* ${newText}`,
        "m.new_content": { msgtype: "m.text", body: newText },
        "m.relates_to": { rel_type: "m.replace", event_id: orig.event_id },
    }),
);
say(`alice: edited ${orig.event_id} with ${edit.event_id}`);
const editApplied = (client) => {
    const e = client.getRoom(roomId)?.findEventById(orig.event_id);
    return e?.replacingEventId() === edit.event_id && e.getContent().body === newText;
};
const editState = (client) => {
    const e = client.getRoom(roomId)?.findEventById(orig.event_id);
    return e ? `replacingEventId ${e.replacingEventId()}, body ${JSON.stringify(e.getContent().body)}` : "original not in the room";
};
for (const [name, client] of [
    ["bob", bobClient],
    ["alice", aliceClient],
]) {
    await step(`${name} sees the edit`, () =>
        waitUntil(() => editApplied(client), () => `${name}'s client to apply edit ${edit.event_id} to ${orig.event_id} (it shows ${editState(client)})`),
    );
    say(`${name}: shows ${orig.event_id} edited: ${JSON.stringify(newText)}`);
}

const reactionContent = { "m.relates_to": { rel_type: "m.annotation", event_id: orig.event_id, key: "👍" } };
const reaction = await step("bob: send 👍 reaction", () => bobClient.sendEvent(roomId, "m.reaction", reactionContent));
say(`bob: reacted 👍 to ${orig.event_id} with ${reaction.event_id}`);
// The 👍 annotations a client's relations container holds for the original.
const thumbs = (client) => {
    const rel = client
        .getRoom(roomId)
        ?.getUnfilteredTimelineSet()
        .relations.getChildEventsForEvent(orig.event_id, "m.annotation", "m.reaction");
    const entry = rel?.getSortedAnnotationsByKey()?.find(([key]) => key === "👍");
    return entry ? [...entry[1]].map((e) => e.getId()) : [];
};
for (const [name, client] of [
    ["alice", aliceClient],
    ["bob", bobClient],
]) {
    await step(`${name} counts the reaction`, () =>
        waitUntil(
            () => thumbs(client).length === 1 && thumbs(client)[0] === reaction.event_id,
            () => `${name}'s relations container to hold bob's 👍 ${reaction.event_id} on ${orig.event_id} (it holds ${JSON.stringify(thumbs(client))})`,
        ),
    );
    say(`${name}: relations container counts 1 👍 on ${orig.event_id}`);
}

// The server bundles the edit (not the annotation) with the original event.
function checkBundled(where, raw) {
    const rel = raw?.unsigned?.["m.relations"];
    const rep = rel?.["m.replace"];
    if (rep?.event_id !== edit.event_id) {
        fail(`${where}: ${orig.event_id} has unsigned.m.relations ${JSON.stringify(rel)}, want m.replace.event_id ${edit.event_id}`);
    }
    if (rep.content?.["m.new_content"]?.body !== newText || rep.sender !== alice.userId || rep.type !== "m.room.message") {
        fail(`${where}: the bundled m.replace of ${orig.event_id} is ${JSON.stringify(rep)}, want the whole edit event (since v1.7)`);
    }
    if (raw.content?.body !== origText) {
        fail(`${where}: ${orig.event_id} content body is ${JSON.stringify(raw.content?.body)}, want the original ${JSON.stringify(origText)} (since v1.7 servers do not apply edits to the content)`);
    }
    if (rel["m.annotation"] !== undefined) {
        fail(`${where}: ${orig.event_id} has an m.annotation aggregation ${JSON.stringify(rel["m.annotation"])}; the spec says m.annotation is not aggregated`);
    }
}
{
    const raw = await step("bob: fetchRoomEvent", () => bobClient.fetchRoomEvent(roomId, orig.event_id));
    checkBundled("GET /event", raw);
    say(`bob: GET /event/${orig.event_id} bundles the edit ${edit.event_id} in unsigned.m.relations.m.replace`);
    const msgs = await step("bob: createMessagesRequest", () => bobClient.createMessagesRequest(roomId, null, 10, sdk.Direction.Backward));
    const inMsgs = msgs.chunk.find((e) => e.event_id === orig.event_id);
    if (!inMsgs) fail(`bob: /messages (10 back from the end) does not include ${orig.event_id}`);
    checkBundled("GET /messages", inMsgs);
    say(`bob: GET /messages bundles the edit with ${orig.event_id} too`);
    const rels = await step("alice: fetchRelations m.annotation", () =>
        aliceClient.fetchRelations(roomId, orig.event_id, "m.annotation", "m.reaction"),
    );
    const relIds = rels.chunk.map((e) => e.event_id);
    if (relIds.length !== 1 || relIds[0] !== reaction.event_id) {
        fail(`alice: /relations/${orig.event_id}/m.annotation/m.reaction gave ${JSON.stringify(relIds)}, want [${reaction.event_id}]`);
    }
    const edits = await step("alice: fetchRelations m.replace", () => aliceClient.fetchRelations(roomId, orig.event_id, "m.replace", null));
    const editIds = edits.chunk.map((e) => e.event_id);
    if (editIds.length !== 1 || editIds[0] !== edit.event_id) {
        fail(`alice: /relations/${orig.event_id}/m.replace gave ${JSON.stringify(editIds)}, want [${edit.event_id}]`);
    }
    say(`alice: /relations lists the reaction and the edit of ${orig.event_id}`);
}

// A second identical annotation is refused (spec: 400 M_DUPLICATE_ANNOTATION).
{
    const exp = expectHttp("bob", "PUT", /\/rooms\/[^/]+\/send\/m\.reaction\/[^/]+$/, 400, "M_DUPLICATE_ANNOTATION", "duplicate reaction");
    expectedSendErrcodes.add("M_DUPLICATE_ANNOTATION");
    let dupErr = null;
    let dupRes = null;
    try {
        dupRes = await withTimeout(bobClient.sendEvent(roomId, "m.reaction", reactionContent), STEP_TIMEOUT_MS, "the duplicate reaction");
    } catch (err) {
        dupErr = err;
    }
    if (dupRes) {
        fail(`bob: a second identical 👍 on ${orig.event_id} was accepted as ${dupRes.event_id}; the spec says 400 M_DUPLICATE_ANNOTATION`);
    }
    if (dupErr?.httpStatus !== 400 || dupErr?.errcode !== "M_DUPLICATE_ANNOTATION" || exp.seen !== 1) {
        fail(`bob: a second identical 👍 on ${orig.event_id} failed with ${describeErr(dupErr)}, want HTTP 400 M_DUPLICATE_ANNOTATION`);
    }
    expectedSendErrcodes.delete("M_DUPLICATE_ANNOTATION");
    say(`bob: a second identical 👍 is refused: ${describeErr(dupErr)}`);
    // Nothing must have reached the room: alice still counts one 👍.
    if (thumbs(aliceClient).length !== 1) fail(`alice: after the refused duplicate, counts ${JSON.stringify(thumbs(aliceClient))}`);
}

// A new bob device: its first sync is limited, so the original arrives with the
// edit bundled; the SDK applies it and counts the reaction.
{
    const creds = await step("bob3: loginRequest", () => login(bobLocalpart()));
    const bob3 = newClient("bob3", creds);
    await step("starting bob3", () => startAndWaitPrepared("bob3", bob3, 4));
    const room = bob3.getRoom(roomId);
    if (!room) fail(`bob3: room ${roomId} not in the initial sync`);
    const ev = room.findEventById(orig.event_id);
    const tl = room.getLiveTimeline().getEvents().map((e) => `${e.getType()} ${e.getId()}`);
    if (!ev) fail(`bob3: ${orig.event_id} is not in the initial sync's timeline (${JSON.stringify(tl)})`);
    if (ev.getServerAggregatedRelation("m.replace")?.event_id !== edit.event_id) {
        fail(
            `bob3: in the limited initial /sync, ${orig.event_id} has unsigned ${JSON.stringify(ev.getUnsigned())}, ` +
                `want m.relations.m.replace.event_id ${edit.event_id} (spec: bundled aggregations in /sync when limited is true)`,
        );
    }
    if (ev.getContent().body !== newText) fail(`bob3: ${orig.event_id} shows body ${JSON.stringify(ev.getContent().body)}, want the edited ${JSON.stringify(newText)}`);
    await step("bob3 counts the reaction", () =>
        waitUntil(
            () => thumbs(bob3).length === 1,
            () => `bob3's relations container to hold bob's 👍 on ${orig.event_id} (it holds ${JSON.stringify(thumbs(bob3))}; timeline ${JSON.stringify(tl)})`,
        ),
    );
    say(`bob3: initial sync shows ${orig.event_id} edited (bundled m.replace) with 1 👍`);
    bob3.stopClient();
}
say("phase 5: done");

// makePng builds a valid w x h 8-bit RGB PNG (a colour gradient).
function makePng(w, h) {
    const raw = Buffer.alloc((w * 3 + 1) * h);
    for (let y = 0; y < h; y++) {
        const row = y * (w * 3 + 1);
        raw[row] = 0; // filter: none
        for (let x = 0; x < w; x++) {
            raw[row + 1 + x * 3] = Math.round((255 * x) / Math.max(1, w - 1));
            raw[row + 2 + x * 3] = Math.round((255 * y) / Math.max(1, h - 1));
            raw[row + 3 + x * 3] = 128;
        }
    }
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // colour type: RGB
    ihdr[10] = 0; // compression
    ihdr[11] = 0; // filter
    ihdr[12] = 0; // interlace
    return Buffer.concat([
        PNG_SIGNATURE,
        pngChunk("IHDR", ihdr),
        pngChunk("IDAT", zlib.deflateSync(raw)),
        pngChunk("IEND", Buffer.alloc(0)),
    ]);
}
function pngChunk(type, data) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
}
function crc32(buf) {
    let c = ~0;
    for (const b of buf) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    }
    return ~c >>> 0;
}

function localpartOf(userId) {
    return userId.replace(/^@/, "").replace(/:.*$/, "");
}
function bobLocalpart() {
    return localpartOf(bob.userId);
}
function aliceLocalpart() {
    return localpartOf(alice.userId);
}

finished = true;
printHttpFailures();
stopAll();
say("PASS");
process.exit(0);
