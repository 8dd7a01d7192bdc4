package e2e

import (
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
	runSDKScript(t, "crypto.mjs", 170*time.Second)
}
