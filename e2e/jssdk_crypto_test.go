package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMatrixJSSDKCrypto drives the real matrix-js-sdk with its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm, a dependency of the SDK, run by node)
// against the lattice binary: alice and bob upload keys, find each other's
// devices, exchange megolm-encrypted messages in an encrypted room (room keys
// shared olm-encrypted over /sendToDevice after /keys/claim) and decrypt them;
// alice bootstraps cross-signing (UIA by password) and bob sees her identity;
// alice backs up her room keys and a new alice device restores them. See
// jssdk/crypto.mjs for the steps.
//
// It needs node and npm; without them it is skipped, unless CI is set, where it fails.
func TestMatrixJSSDKCrypto(t *testing.T) {
	node, npm := requireTool(t, "node"), requireTool(t, "npm")
	ensureNodeModules(t, npm)

	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")

	ctx, cancel := context.WithTimeout(context.Background(), 170*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "crypto.mjs")
	cmd.Dir = jssdkDir
	cmd.Env = append(os.Environ(),
		"LATTICE_URL="+srv.URL,
		"LATTICE_PASSWORD=correct horse battery", // the password srv.Register uses
		"ALICE_USER="+alice.UserID, "ALICE_TOKEN="+alice.Token, "ALICE_DEVICE="+alice.DeviceID,
		"BOB_USER="+bob.UserID, "BOB_TOKEN="+bob.Token, "BOB_DEVICE="+bob.DeviceID,
	)
	cmd.WaitDelay = 5 * time.Second
	if err := runStreaming(t, cmd, "crypto.mjs: "); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("node crypto.mjs did not finish within 170s: %v", err)
		}
		t.Fatalf("node crypto.mjs failed: %v (its output above says which step)", err)
	}
}
