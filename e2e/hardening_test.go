package e2e

import (
	"os/exec"
	"testing"
)

// TestResetPasswordRevokesTokensAtOnce: `lattice reset-password` is another process writing the
// database; the running server must refuse the old access token on the very next request, not
// after a cache expires.
func TestResetPasswordRevokesTokensAtOnce(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	expectOK(t, whoami(alice), "whoami before the reset") // the token is now cached
	expectOK(t, whoami(alice), "whoami before the reset, again")
	out, err := exec.Command(binary, "reset-password", "--config", srv.ConfigPath, "--user", "alice", "--password", "a brand new password").CombinedOutput()
	if err != nil {
		t.Fatalf("reset-password: %v: %s", err, out)
	}
	expectErr(t, whoami(alice), "whoami with the token reset-password revoked", 401, "M_UNKNOWN_TOKEN")
}
