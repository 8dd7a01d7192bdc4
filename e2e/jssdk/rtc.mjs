// rtc.mjs joins a MatrixRTC call with matrix-js-sdk's MatrixRTCSession, as Element Call
// does, for one user; ../rtc_jssdk_test.go runs one process per user and kills one.
//
//   LATTICE_URL           homeserver base URL
//   RTC_USER, RTC_TOKEN, RTC_DEVICE   the user's ID, access token and device
//   RTC_ROOM              the room of the call (already joined)
//   RTC_PEER              the other user's ID
//   RTC_LEAVE_DELAY_MS    the delayed leave event's delay (membershipServerSideExpiryTimeout)
//   RTC_WAIT_PEER_GONE=1  after both are in the call, wait until the peer's membership ends
//
// It prints lines the test reads: "TRANSPORTS <json>", "JOINED", "BOTH" (both users'
// memberships seen), then, with RTC_WAIT_PEER_GONE, "PEER_GONE" when the peer's membership
// has ended. Any failure prints "FAIL: ..." and exits 1.

import * as sdk from "matrix-js-sdk";
import { MatrixRTCSessionEvent } from "matrix-js-sdk/lib/matrixrtc/index.js";

const t0 = Date.now();
const say = (...parts) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s] ${parts.join(" ")}\n`);
const fail = (msg) => {
    say(`FAIL: ${msg}`);
    process.exit(1);
};
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));
if (!process.env.LATTICE_JSSDK_SDK_LOG) {
    console.debug = console.info = console.log = console.trace = () => {};
}
setTimeout(() => fail("overall timeout of 90s exceeded"), 90_000);

const env = (k) => process.env[k] ?? fail(`${k} is not set`);
const baseUrl = env("LATTICE_URL");
const userId = env("RTC_USER");
const roomId = env("RTC_ROOM");
const peer = env("RTC_PEER");
const leaveDelay = Number(env("RTC_LEAVE_DELAY_MS"));

const client = sdk.createClient({ baseUrl, userId, accessToken: env("RTC_TOKEN"), deviceId: env("RTC_DEVICE") });

// The transports come from the homeserver's MSC4143 endpoint, as Element Call finds its SFU.
const res = await fetch(`${baseUrl}/_matrix/client/v1/rtc/transports`, { headers: { Authorization: `Bearer ${env("RTC_TOKEN")}` } });
if (!res.ok) fail(`/rtc/transports: ${res.status}`);
const transports = (await res.json()).rtc_transports;
say(`TRANSPORTS ${JSON.stringify(transports)}`);
const livekit = transports.find((t) => t.type === "livekit") ?? fail("no livekit transport");

// Element Call asks for an OpenID token to give to the LiveKit JWT service.
const openid = await client.getOpenIdToken();
if (!openid.access_token || openid.matrix_server_name === undefined) fail(`openid token: ${JSON.stringify(openid)}`);

await new Promise((resolve, reject) => {
    client.once(sdk.ClientEvent.Sync, (state) => (state === "PREPARED" ? resolve() : reject(new Error(`sync ${state}`))));
    client.startClient({ initialSyncLimit: 5 });
});
const room = client.getRoom(roomId) ?? fail(`room ${roomId} not in the client`);
const session = client.matrixRTC.getRoomSession(room);

const users = () => new Set(session.memberships.filter((m) => !m.isExpired()).map((m) => m.sender));
const waitFor = (what, cond, ms) =>
    new Promise((resolve) => {
        if (cond()) return resolve();
        const timer = setTimeout(() => fail(`timed out after ${ms} ms waiting for ${what}; memberships: ${[...users()]}`), ms);
        const check = () => {
            if (!cond()) return;
            clearTimeout(timer);
            session.off(MatrixRTCSessionEvent.MembershipsChanged, check);
            resolve();
        };
        session.on(MatrixRTCSessionEvent.MembershipsChanged, check);
    });

session.on(MatrixRTCSessionEvent.MembershipManagerError, (e) => fail(`membership manager: ${e}`));
session.joinRoomSession([livekit], { type: "livekit", focus_selection: "oldest_membership" }, {
    useNewMembershipManager: true,
    membershipServerSideExpiryTimeout: leaveDelay,
    membershipKeepAlivePeriod: Math.floor(leaveDelay / 4),
    manageMediaKeys: false,
});
await waitFor("my own membership", () => users().has(userId), 20_000);
say("JOINED");
await waitFor("both memberships", () => users().has(userId) && users().has(peer), 30_000);
say("BOTH");
if (process.env.RTC_WAIT_PEER_GONE) {
    await waitFor("the peer's membership to end", () => !users().has(peer), 60_000);
    say("PEER_GONE");
    await session.leaveRoomSession(5000);
    client.stopClient();
    process.exit(0);
}
// Stay in the call, restarting the delayed leave, until killed.
