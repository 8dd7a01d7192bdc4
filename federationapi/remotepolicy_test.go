package federationapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestPolicySign: the request reaches POST /_matrix/policy/v1/sign on the policy server,
// signed with X-Matrix and carrying the event; the signature is taken from the answer, and a
// refusal comes back as the policy server's error.
func TestPolicySign(t *testing.T) {
	var gotAuth, gotBody string
	ps := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/_matrix/policy/v1/sign" {
			http.NotFound(w, r)
			return
		}
		gotAuth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		name := r.Host
		if strings.Contains(gotBody, "spam") {
			w.WriteHeader(400)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"The message appears to contain possible spam"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{name: map[string]string{"ed25519:policy_server": "c2lnbmF0dXJl"}})
	}))
	defer ps.Close()
	name := spec.ServerName(strings.TrimPrefix(ps.URL, "https://"))
	lb := newLoopbackServer(t)
	r := lb.fed.Remote()
	_, key, _ := ed25519.GenerateKey(nil)
	build := func(body string) gomatrixserverlib.PDU {
		proto := gomatrixserverlib.ProtoEvent{SenderID: "@a:" + string(lb.name), RoomID: "!r:" + string(lb.name), Type: "m.room.message",
			Content: spec.RawJSON(`{"body":"` + body + `"}`), Depth: 1, PrevEvents: []string{}, AuthEvents: []string{}}
		pdu, err := gomatrixserverlib.MustGetRoomVersion("10").NewEventBuilderFromProtoEvent(&proto).Build(lb.fed.cfg.Now(), lb.name, "ed25519:k", key)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	sig, err := r.PolicySign(context.Background(), name, build("hello"))
	if err != nil || sig != "c2lnbmF0dXJl" {
		t.Fatalf("PolicySign: %q, %v", sig, err)
	}
	if !strings.HasPrefix(gotAuth, "X-Matrix ") || !strings.Contains(gotBody, `"hello"`) {
		t.Fatalf("the policy server got Authorization %q and body %s", gotAuth, gotBody)
	}
	_, err = r.PolicySign(context.Background(), name, build("spam"))
	var me spec.MatrixError
	if !errors.As(err, &me) || me.ErrCode != spec.ErrorForbidden || me.Err != "The message appears to contain possible spam" {
		t.Fatalf("a refusal: %v, want the policy server's M_FORBIDDEN verbatim", err)
	}
}
