package e2e

import (
	"testing"
	"time"
)

// TestJSSDKCryptoFederation drives the real matrix-js-sdk with its Rust crypto across two
// federating Lattice servers (TLS with the test CA): alice's client talks to server A, bob's
// to server B, and everything one learns of the other crosses the federation.
//
//   - Alice creates an encrypted room (m.room.encryption, megolm) inviting bob, an invite
//     across servers; bob joins over federation; both crypto stacks see the room encrypted.
//   - Each client finds the other's device through /keys/query answered by the other server;
//     alice claims bob's one-time key through /keys/claim; the megolm room keys travel
//     olm-encrypted as to-device messages between the servers; bob decrypts alice's message
//     and alice bob's reply.
//   - Bob logs in a second device on B: the m.device_list_update EDU from B makes A list bob
//     in alice's /sync device_lists.changed, her client's /keys/query reaches the new device
//     through A, and her next message is decrypted by both of bob's devices.
//   - Cross-signing: bob's client on B sees alice's cross-signing identity uploaded to A, and
//     her reset of it (m.signing_key_update and federated /keys/query).
//   - Key backup (alice's own server only): a new alice device restores her room keys,
//     including the one bob's session on B shared with her.
//
// See jssdk/crypto.mjs (phases 1-4, 4b, 5, 6; BOB_URL is bob's server). It needs node and
// npm; without them it is skipped, unless CI is set, where it fails.
func TestJSSDKCryptoFederation(t *testing.T) {
	node := requireNodeModules(t)
	ca := newTestCA(t)
	a, b := startProxiedServer(t, ca), startProxiedServer(t, ca)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	t.Logf("alice %s on A (client API %s), bob %s on B (client API %s)", alice.UserID, a.URL, bob.UserID, b.URL)
	runNodeScript(t, node, "crypto.mjs", 170*time.Second, alice, bob,
		"LATTICE_URL="+a.URL, "BOB_URL="+b.URL, "CRYPTO_PHASES=new-device,cross-signing,backup")
}
