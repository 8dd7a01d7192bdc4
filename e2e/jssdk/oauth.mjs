// oauth.mjs runs matrix-js-sdk's OAuth 2.0 API helpers (lib/oidc, what Element Web signs in
// with) against Lattice; ../oauth_jssdk_test.go drives the browser part in between.
//
//   OAUTH_STEP=discover  discovers and validates the server metadata (getAuthMetadata, with
//                        the signing keys), registers a web client with registerOidcClient,
//                        and builds an authorization URL with generateAuthorizationUrl. Prints
//                        "PARAMS <json>" (client ID, URL, verifier, nonce, state, issuer).
//   OAUTH_STEP=exchange  exchanges OAUTH_CODE at the token endpoint, checks the answer with
//                        validateBearerTokenResponse and the ID token with validateIdToken,
//                        then calls whoami with the access token. Prints "WHOAMI <user> <device>".
//                        Then lets the access token expire twice (OAUTH_EXPIRY_WAIT_MS) and
//                        calls whoami through a client whose tokenRefreshFunction is the SDK's
//                        OidcTokenRefresher. Prints "REFRESHED <refreshes>".
//
//   LATTICE_URL, OAUTH_REDIRECT_URI; for exchange also OAUTH_CLIENT_ID, OAUTH_CODE,
//   OAUTH_VERIFIER, OAUTH_NONCE, OAUTH_ISSUER, OAUTH_TOKEN_ENDPOINT.
// Any failure prints "FAIL: ..." and exits 1.

import * as sdk from "matrix-js-sdk";

const fail = (msg) => {
    process.stdout.write(`FAIL: ${msg}\n`);
    process.exit(1);
};
process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));
if (!process.env.LATTICE_JSSDK_SDK_LOG) {
    console.debug = console.info = console.log = console.trace = () => {};
}
setTimeout(() => fail("overall timeout of 60s exceeded"), 60_000);
const env = (k) => process.env[k] ?? fail(`${k} is not set`);

const baseUrl = env("LATTICE_URL");
const redirectUri = env("OAUTH_REDIRECT_URI");

if (env("OAUTH_STEP") === "discover") {
    const client = sdk.createClient({ baseUrl });
    const config = await client.getAuthMetadata();
    if (!Array.isArray(config.signingKeys) || config.signingKeys.length === 0) fail("no signing keys");
    if (!config.account_management_uri) fail("no account_management_uri");
    // The same validation on its own, as Element Web does for a well-known issuer.
    sdk.validateAuthMetadata(config);
    const clientId = await sdk.registerOidcClient(config, {
        clientName: "js-sdk test",
        clientUri: "https://app.example.org/",
        redirectUris: [redirectUri],
        applicationType: "web",
        logoUri: "https://app.example.org/logo.png",
        tosUri: "https://app.example.org/tos",
        policyUri: "https://app.example.org/policy",
        contacts: ["admin@example.org"],
    });
    const params = sdk.generateAuthorizationParams({ redirectUri });
    const url = await sdk.generateAuthorizationUrl(config.authorization_endpoint, clientId, params);
    process.stdout.write(
        "PARAMS " +
            JSON.stringify({
                clientId,
                url,
                verifier: params.codeVerifier,
                nonce: params.nonce,
                state: params.state,
                issuer: config.issuer,
                tokenEndpoint: config.token_endpoint,
            }) +
            "\n",
    );
    process.exit(0);
}

const clientId = env("OAUTH_CLIENT_ID");
const res = await fetch(env("OAUTH_TOKEN_ENDPOINT"), {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
        grant_type: "authorization_code",
        code: env("OAUTH_CODE"),
        redirect_uri: redirectUri,
        client_id: clientId,
        code_verifier: env("OAUTH_VERIFIER"),
    }),
});
const body = await res.json();
if (res.status !== 200) fail(`token endpoint: ${res.status} ${JSON.stringify(body)}`);
try {
    sdk.validateBearerTokenResponse(body);
} catch (e) {
    fail(`validateBearerTokenResponse: ${e}`);
}
try {
    sdk.validateIdToken(body.id_token, env("OAUTH_ISSUER"), clientId, env("OAUTH_NONCE"));
} catch (e) {
    fail(`validateIdToken: ${e}`);
}
const client = sdk.createClient({ baseUrl, accessToken: body.access_token });
const who = await client.whoami();
process.stdout.write(`WHOAMI ${who.user_id} ${who.device_id}\n`);

// Refresh as Element Web does: the SDK's OidcTokenRefresher (which discovers the issuer's
// openid-configuration and uses oidc-client-ts for the refresh grant) as the client's
// tokenRefreshFunction. Once the access token has expired, the next request is answered
// 401 M_UNKNOWN_TOKEN with soft_logout, the SDK refreshes and retries, and the request
// succeeds with the new access token. Twice, so that the rotated refresh token is used too.
// oidc-client-ts keeps its state in the browser's storage; node has none, so in-memory ones.
const memoryStorage = () => {
    const memory = new Map();
    return {
        getItem: (k) => (memory.has(k) ? memory.get(k) : null),
        setItem: (k, v) => memory.set(k, String(v)),
        removeItem: (k) => memory.delete(k),
        key: (i) => [...memory.keys()][i] ?? null,
        get length() {
            return memory.size;
        },
    };
};
globalThis.localStorage ??= memoryStorage();
globalThis.sessionStorage ??= memoryStorage();
globalThis.window ??= globalThis;
const refresher = new sdk.OidcTokenRefresher(env("OAUTH_ISSUER"), clientId, redirectUri, who.device_id, sdk.decodeIdToken(body.id_token));
await refresher.oidcClientReady;
let refreshes = 0;
refresher.persistTokens = async () => {
    refreshes++;
};
const refreshing = sdk.createClient({
    baseUrl,
    userId: who.user_id,
    deviceId: who.device_id,
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
    tokenRefreshFunction: (token) => refresher.doRefreshAccessToken(token),
});
const waitMs = Number(env("OAUTH_EXPIRY_WAIT_MS"));
let last = body.access_token;
for (let round = 1; round <= 2; round++) {
    await new Promise((resolve) => setTimeout(resolve, waitMs));
    const again = await refreshing.whoami();
    if (again.user_id !== who.user_id) fail(`whoami after refresh: ${JSON.stringify(again)}`);
    const now = refreshing.getAccessToken();
    if (now === last) fail(`round ${round}: the access token was not refreshed`);
    last = now;
}
process.stdout.write(`REFRESHED ${refreshes}\n`);
process.exit(0);
