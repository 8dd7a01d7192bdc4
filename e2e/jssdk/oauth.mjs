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
process.exit(0);
