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
// Any failure prints "FAIL: ..." and exits 1; success prints "PASS" and exits 0.
// Every non-2xx HTTP response the SDK got is printed as it happens and summarised
// at the end, with method, path, status and body.

import * as sdk from "matrix-js-sdk";

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
    if (typeof a[0] === "string" && noise.test(a[0])) return;
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
            httpFailures.push({ client: name, method, path, status: res.status, body });
            say(`http ${name}: ${method} ${path} -> ${res.status} ${body.replace(/\s+/g, " ")}`);
        } else if (TRACE) {
            say(`http ${name}: ${method} ${path} -> ${res.status} (${ms}ms)`);
        }
        return res;
    };
}

function printHttpFailures() {
    if (httpFailures.length === 0) {
        say("http: every request the SDK made got a 2xx answer");
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
            timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s waiting for ${what}`)), ms);
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
