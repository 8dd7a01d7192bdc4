package e2e

import (
	"net/url"
	"sync"
	"testing"
)

// Fixes of an independent review of the OAuth 2.0 server, each driven over HTTP.

// TestOAuthConcurrentRefresh: refreshes sent at the same time with the same refresh token
// (a client retrying before the first answer came back) all succeed with tokens that work,
// and the client can still repeat the refresh with that token afterwards, on both backends.
func TestOAuthConcurrentRefresh(t *testing.T) {
	s := StartServer(t)
	s.Register(t, "alice")
	clientID := nativeClient(t, s, nil)
	tok := codeFlow(t, s, clientID, randomDeviceID(), "alice", "correct horse battery")
	ref := func(rt string) Resp {
		return tokenRequest(t, s, "/_lattice/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}})
	}
	rt := str(tok.Body, "refresh_token")
	for trial := 0; trial < 6; trial++ {
		const n = 3
		answers := make([]Resp, n)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = ref(rt) }()
		}
		wg.Wait()
		for i, a := range answers {
			if a.Status != 200 {
				t.Fatalf("trial %d: concurrent refresh %d: %d %s", trial, i, a.Status, a.Raw)
			}
		}
		// The answer may have been lost: the client repeats the refresh.
		again := ref(rt)
		if again.Status != 200 {
			t.Fatalf("trial %d: refresh repeated after concurrent ones: %d %s", trial, again.Status, again.Raw)
		}
		// Whichever answer the client kept, its tokens work.
		for i, a := range append(answers, again) {
			if r := s.Do(t, str(a.Body, "access_token"), "GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 200 {
				t.Fatalf("trial %d: access token of answer %d: %d %s", trial, i, r.Status, r.Raw)
			}
		}
		rt = str(answers[trial%n].Body, "refresh_token")
		for i, a := range answers {
			if str(a.Body, "refresh_token") != rt {
				t.Fatalf("trial %d: answer %d has another refresh token than answer %d", trial, i, trial%n)
			}
		}
	}
	if r := ref(rt); r.Status != 200 {
		t.Fatalf("refresh after the trials: %d %s", r.Status, r.Raw)
	}
}
