// A small bridge built on matrix-appservice-bridge, between Matrix and a fake remote network
// whose "remote side" is a control HTTP server the Go test (../asbridge_test.go) drives.
//
// Remote network: channels (names) with users (names). Channel C is bridged to the portal room
// #remote_C:<domain>, created on the first alias query; remote user U is the ghost
// @remote_U:<domain>.
//
// Environment: LATTICE_URL (client API), BRIDGE_DOMAIN (server_name), BRIDGE_REGISTRATION (the
// registration YAML the homeserver loads), BRIDGE_PORT (where the homeserver pushes
// transactions), CONTROL_PORT (the control server), BRIDGE_DATA (a directory for the stores).
//
// Control server (JSON over HTTP on 127.0.0.1:CONTROL_PORT):
//   GET  /state                      everything recorded: every transaction as received (txnId,
//                                    events, ephemeral events, body keys, whether it was refused),
//                                    the messages the remote network received, the ephemeral
//                                    events the bridge handed on, alias and user queries, portals
//   POST /mode {refuse, delay_ms}    refuse transactions with 503 (nothing processed), or answer
//                                    each processed transaction only after delay_ms
//   POST /remote/user {name, displayname}  provision the ghost of a remote user
//   POST /remote/message {channel, from, text}  a remote user writes in a channel
import http from "node:http";
import path from "node:path";
import {
  AppService, Bridge, Logger, RemoteRoom,
} from "matrix-appservice-bridge";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
};
const homeserverUrl = env("LATTICE_URL");
const domain = env("BRIDGE_DOMAIN");
const registrationPath = env("BRIDGE_REGISTRATION");
const bridgePort = Number(env("BRIDGE_PORT"));
const controlPort = Number(env("CONTROL_PORT"));
const dataDir = env("BRIDGE_DATA");

Logger.configure({ console: process.env.BRIDGE_LOG_LEVEL || "warn" });

const state = {
  transactions: [], // every PUT /transactions as received, in arrival order
  remote_inbox: [], // Matrix messages the bridge relayed to the remote network, in order
  ephemeral: [], // ephemeral events the bridge's controller saw (onEphemeralEvent)
  alias_queries: [],
  user_queries: [],
  portals: {}, // channel -> room ID
  errors: [],
};
const mode = { refuse: false, delay_ms: 0 };

const summary = (ev) => ({
  event_id: ev.event_id, type: ev.type, room_id: ev.room_id, sender: ev.sender,
  state_key: ev.state_key, body: ev.content?.body, membership: ev.content?.membership,
});

// RecordingAppService is the framework's AppService, recording each transaction before the
// framework handles it (and dedupes the last txnId, as it does).
class RecordingAppService extends AppService {
  onTransaction(req, res) {
    const body = req.body || {};
    const unstable = body["de.sorunome.msc2409.ephemeral"];
    const record = {
      txn_id: req.params.txnId,
      auth: req.headers.authorization === `Bearer ${this.config.homeserverToken}`,
      keys: Object.keys(body).sort(),
      events: (body.events || []).map(summary),
      ephemeral: (unstable || body.ephemeral || []).map((e) => ({ type: e.type, room_id: e.room_id, content: e.content })),
      refused: mode.refuse,
    };
    state.transactions.push(record);
    if (mode.refuse) {
      res.status(503).send({ errcode: "M_UNKNOWN", error: "the remote network is down (test)" });
      return;
    }
    if (mode.delay_ms > 0) {
      const send = res.send.bind(res);
      const delay = mode.delay_ms;
      res.send = (b) => {
        setTimeout(() => { try { send(b); } catch { /* the homeserver went away */ } }, delay);
        return res;
      };
    }
    super.onTransaction(req, res);
  }
}

const channelOfAlias = (alias) => {
  const m = /^#remote_([a-z0-9]+):/.exec(alias);
  return m ? m[1] : null;
};

const bridge = new Bridge({
  homeserverUrl,
  domain,
  registration: registrationPath,
  roomStore: path.join(dataDir, "rooms.db"),
  userStore: path.join(dataDir, "users.db"),
  userActivityStore: path.join(dataDir, "activity.db"),
  controller: {
    onUserQuery: (user) => {
      // The homeserver asks about a ghost nobody provisioned yet: create it with a name.
      state.user_queries.push(user.getId());
      return { name: `${user.localpart.slice("remote_".length)} (remote)` };
    },
    onAliasQuery: async (alias, localpart) => {
      state.alias_queries.push(alias);
      const channel = channelOfAlias(alias);
      if (!channel) return null;
      return {
        creationOpts: {
          room_alias_name: localpart,
          name: `#${channel} (remote)`,
          preset: "public_chat",
          visibility: "private",
        },
        remote: new RemoteRoom(channel, { channel }),
      };
    },
    onAliasQueried: async (alias, roomId) => {
      state.portals[channelOfAlias(alias)] = roomId;
    },
    onEvent: async (request, context) => {
      const ev = request.getData();
      if (ev.type !== "m.room.message") return;
      const remote = context.rooms.remote;
      state.remote_inbox.push({
        channel: remote ? remote.getId() : null,
        event_id: ev.event_id,
        sender: ev.sender,
        text: ev.content?.body,
      });
    },
    onEphemeralEvent: async (request) => {
      const ev = request.getData();
      state.ephemeral.push({ type: ev.type, room_id: ev.room_id, content: ev.content });
    },
  },
});

async function portalRoom(channel) {
  if (state.portals[channel]) return state.portals[channel];
  const entries = await bridge.getRoomStore().getLinkedMatrixRooms(channel);
  if (!entries.length) throw new Error(`no portal room for channel ${channel}`);
  return entries[0].getId();
}

async function readJSON(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {};
}

const routes = {
  "GET /state": async () => state,
  "POST /mode": async (body) => {
    if (typeof body.refuse === "boolean") mode.refuse = body.refuse;
    if (typeof body.delay_ms === "number") mode.delay_ms = body.delay_ms;
    return mode;
  },
  "POST /remote/user": async (body) => {
    const intent = bridge.getIntentFromLocalpart(`remote_${body.name}`);
    await intent.ensureRegistered();
    if (body.displayname) await intent.setDisplayName(body.displayname);
    return { user_id: intent.userId };
  },
  "POST /remote/message": async (body) => {
    const roomId = await portalRoom(body.channel);
    const intent = bridge.getIntentFromLocalpart(`remote_${body.from}`);
    await intent.join(roomId);
    const res = await intent.sendText(roomId, body.text);
    return { event_id: res.event_id, room_id: roomId };
  },
};

const control = http.createServer(async (req, res) => {
  const route = routes[`${req.method} ${req.url}`];
  let status = 200;
  let out;
  if (!route) {
    status = 404;
    out = { error: `no route ${req.method} ${req.url}` };
  } else {
    try {
      out = await route(await readJSON(req));
    } catch (err) {
      status = 500;
      out = { error: String(err?.body ? JSON.stringify(err.body) : err?.message || err) };
      state.errors.push(`${req.method} ${req.url}: ${out.error}`);
      console.error(`control ${req.method} ${req.url} failed:`, err);
    }
  }
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(out));
});

process.on("unhandledRejection", (err) => {
  state.errors.push(`unhandled rejection: ${err?.message || err}`);
  console.error("unhandled rejection:", err);
});

await bridge.initialise();
await bridge.listen(bridgePort, "127.0.0.1", 10, new RecordingAppService({
  homeserverToken: bridge.registration.getHomeserverToken(),
}));
await new Promise((resolve) => control.listen(controlPort, "127.0.0.1", resolve));
console.log(`bridge listening on 127.0.0.1:${bridgePort}, control on 127.0.0.1:${controlPort}`);
