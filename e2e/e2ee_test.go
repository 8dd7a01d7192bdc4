package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
)

// The end-to-end encryption module (content/client-server-api/modules/end_to_end_encryption.md,
// send_to_device.md; keys.yaml, cross_signing.yaml, key_backup.yaml, to_device.yaml) through
// the real server, with real ed25519 signatures.

// signingKey is an ed25519 key pair with its unpadded base64 public key.
type signingKey struct {
	priv ed25519.PrivateKey
	pub  string
}

func newSigningKey(t *testing.T) signingKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{priv: priv, pub: base64.RawStdEncoding.EncodeToString(pub)}
}

// signed returns obj signed by signer's key keyID.
func signed(t *testing.T, obj any, signer, keyID string, key signingKey) map[string]any {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	out, err := gomatrixserverlib.SignJSON(signer, gomatrixserverlib.KeyID(keyID), key.priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// deviceKeys returns c's device keys object, self-signed with key.
func deviceKeys(t *testing.T, c *Client, key signingKey) map[string]any {
	t.Helper()
	return signed(t, map[string]any{
		"user_id": c.UserID, "device_id": c.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]string{
			"ed25519:" + c.DeviceID:    key.pub,
			"curve25519:" + c.DeviceID: "curve-" + c.DeviceID,
		},
	}, c.UserID, "ed25519:"+c.DeviceID, key)
}

// otks returns n signed one-time keys with IDs prefix0..prefix(n-1).
func otks(t *testing.T, c *Client, key signingKey, prefix string, n int) map[string]any {
	t.Helper()
	out := map[string]any{}
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		out["signed_curve25519:"+id] = signed(t, map[string]any{"key": "otk-" + id}, c.UserID, "ed25519:"+c.DeviceID, key)
	}
	return out
}

func uploadKeys(c *Client, body map[string]any) Resp {
	c.t.Helper()
	return call(c, "POST", "/_matrix/client/v3/keys/upload", body)
}

// claimOne claims a signed_curve25519 key of target's device; "" when none came back.
func claimOne(c *Client, target *Client) (string, map[string]any) {
	c.t.Helper()
	r := call(c, "POST", "/_matrix/client/v3/keys/claim", map[string]any{
		"one_time_keys": map[string]any{target.UserID: map[string]string{target.DeviceID: "signed_curve25519"}},
	})
	if r.Status != 200 {
		c.t.Fatalf("claim: %d %s", r.Status, r.Raw)
	}
	for id, k := range obj(r.Body, "one_time_keys", target.UserID, target.DeviceID) {
		key, _ := k.(map[string]any)
		return id, key
	}
	return "", nil
}

func queryKeys(c *Client, users map[string][]string) Resp {
	c.t.Helper()
	r := call(c, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": users})
	if r.Status != 200 {
		c.t.Fatalf("query: %d %s", r.Status, r.Raw)
	}
	return r
}

func otkCount(r Resp) float64 {
	n, _ := obj(r.Body, "device_one_time_keys_count")["signed_curve25519"].(float64)
	return n
}

func unusedFallback(r Resp) []any {
	l, _ := r.Body["device_unused_fallback_key_types"].([]any)
	return l
}

func TestE2EEKeysUploadQueryClaim(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	key := newSigningKey(t)

	// keys.yaml /keys/upload: the device's own keys, signed by itself.
	wrong := deviceKeys(t, alice, key)
	wrong["device_id"] = "OTHER"
	expectErr(t, uploadKeys(alice, map[string]any{"device_keys": wrong}), "device keys of another device", 400, "M_INVALID_PARAM")
	badSig := deviceKeys(t, alice, newSigningKey(t))
	badSig["keys"].(map[string]any)["ed25519:"+alice.DeviceID] = key.pub
	expectErr(t, uploadKeys(alice, map[string]any{"device_keys": badSig}), "badly signed device keys", 400, "M_INVALID_SIGNATURE")

	fallback := signed(t, map[string]any{"key": "fallback-key", "fallback": true}, alice.UserID, "ed25519:"+alice.DeviceID, key)
	r := uploadKeys(alice, map[string]any{
		"device_keys":   deviceKeys(t, alice, key),
		"one_time_keys": otks(t, alice, key, "AAA", 3),
		"fallback_keys": map[string]any{"signed_curve25519:FB1": fallback},
	})
	expectOK(t, r, "upload keys")
	if n, _ := obj(r.Body, "one_time_key_counts")["signed_curve25519"].(float64); n != 3 {
		t.Errorf("one_time_key_counts after upload: %s", r.Raw)
	}
	// The same key ID with another key is refused.
	dup := map[string]any{"signed_curve25519:AAA0": signed(t, map[string]any{"key": "different"}, alice.UserID, "ed25519:"+alice.DeviceID, key)}
	expectErr(t, uploadKeys(alice, map[string]any{"one_time_keys": dup}), "changed one-time key", 400, "M_INVALID_PARAM")

	s := alice.Sync("", "", 0)
	if otkCount(s) != 3 || !slices.Contains(unusedFallback(s), any("signed_curve25519")) {
		t.Errorf("alice's sync before claims: count %v, unused fallback %v", otkCount(s), unusedFallback(s))
	}

	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/devices/"+esc(alice.DeviceID), map[string]any{"display_name": "Alice phone"}), "rename")
	q := queryKeys(bob, map[string][]string{alice.UserID: {}, "@x:remote.example": {}})
	dev := obj(q.Body, "device_keys", alice.UserID, alice.DeviceID)
	if str(obj(dev, "keys"), "ed25519:"+alice.DeviceID) != key.pub || str(obj(dev, "unsigned"), "device_display_name") != "Alice phone" {
		t.Errorf("bob's query of alice: %s", q.Raw)
	}
	raw, _ := json.Marshal(dev)
	if err := gomatrixserverlib.VerifyJSON(alice.UserID, gomatrixserverlib.KeyID("ed25519:"+alice.DeviceID), mustDecode(t, key.pub), raw); err != nil {
		t.Errorf("queried device keys do not verify: %v", err)
	}
	if obj(q.Body, "failures", "remote.example") == nil {
		t.Errorf("remote user not in failures: %s", q.Raw)
	}
	q = queryKeys(bob, map[string][]string{alice.UserID: {"NOSUCHDEVICE"}})
	if len(obj(q.Body, "device_keys", alice.UserID)) != 0 {
		t.Errorf("query of an unknown device: %s", q.Raw)
	}

	// keys.yaml /keys/claim: each one-time key once, then the fallback key (reused).
	seen := map[string]bool{}
	for i := range 3 {
		id, k := claimOne(bob, alice)
		if id == "" || seen[id] || k["fallback"] == true {
			t.Fatalf("claim %d: %q %v (seen %v)", i, id, k, seen)
		}
		seen[id] = true
		if i == 1 {
			if n := otkCount(alice.Sync("", "", 0)); n != 1 {
				t.Errorf("one-time key count after two claims: %v, want 1", n)
			}
		}
	}
	for range 2 {
		id, k := claimOne(bob, alice)
		if id != "signed_curve25519:FB1" || k["fallback"] != true {
			t.Errorf("claim with no one-time keys left: %q %v, want the fallback key", id, k)
		}
	}
	s = alice.Sync("", "", 0)
	if otkCount(s) != 0 || slices.Contains(unusedFallback(s), any("signed_curve25519")) {
		t.Errorf("alice's sync after claims: count %v, unused fallback %v", otkCount(s), unusedFallback(s))
	}
	r = call(bob, "POST", "/_matrix/client/v3/keys/claim", map[string]any{
		"one_time_keys": map[string]any{"@x:remote.example": map[string]string{"D": "signed_curve25519"}},
	})
	if obj(r.Body, "failures", "remote.example") == nil {
		t.Errorf("claim for a remote user: %s", r.Raw)
	}
}

func mustDecode(t *testing.T, s string) ed25519.PublicKey {
	t.Helper()
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestE2EEConcurrentClaims: keys.yaml "Servers must ensure that each one-time key is returned
// at most once" under concurrent claims.
func TestE2EEConcurrentClaims(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	key := newSigningKey(t)
	const nKeys, workers, perWorker = 30, 8, 5
	fallback := signed(t, map[string]any{"key": "fb", "fallback": true}, alice.UserID, "ed25519:"+alice.DeviceID, key)
	expectOK(t, uploadKeys(alice, map[string]any{
		"device_keys": deviceKeys(t, alice, key), "one_time_keys": otks(t, alice, key, "K", nKeys),
		"fallback_keys": map[string]any{"signed_curve25519:FB": fallback},
	}), "upload")
	var claimers []*Client
	for i := range workers {
		claimers = append(claimers, srv.Register(t, fmt.Sprintf("claimer%d", i)))
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range claimers {
		wg.Add(1)
		go func(c *Client) {
			defer wg.Done()
			for range perWorker {
				r := c.Do("POST", "/_matrix/client/v3/keys/claim", map[string]any{
					"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}},
				})
				if r.Status != 200 {
					t.Errorf("claim: %d %s", r.Status, r.Raw)
					return
				}
				mu.Lock()
				for id := range obj(r.Body, "one_time_keys", alice.UserID, alice.DeviceID) {
					got[id]++
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	for id, n := range got {
		if id != "signed_curve25519:FB" && n > 1 {
			t.Errorf("one-time key %s returned %d times", id, n)
		}
	}
	if len(got) != nKeys+1 || got["signed_curve25519:FB"] != workers*perWorker-nKeys {
		t.Errorf("claims returned %d distinct keys and the fallback %d times, want %d and %d", len(got), got["signed_curve25519:FB"], nKeys+1, workers*perWorker-nKeys)
	}
}

func sendToDevice(c *Client, evType, txnID string, messages map[string]any) {
	c.t.Helper()
	r := call(c, "PUT", fmt.Sprintf("/_matrix/client/v3/sendToDevice/%s/%s", esc(evType), esc(txnID)), map[string]any{"messages": messages})
	if r.Status != 200 {
		c.t.Fatalf("sendToDevice %s: %d %s", txnID, r.Status, r.Raw)
	}
}

func toDeviceEvents(r Resp) []event { return list(obj(r.Body, "to_device"), "events") }

// TestE2EEToDevice: send_to_device.md delivery — once per acknowledged token, again on a
// retried token, "*" for all devices, idempotent transaction IDs, a cap per response, and
// long-polls woken by a message.
func TestE2EEToDevice(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	alice2 := srv.Login(t, "alice")
	bob := srv.Register(t, "bob")

	s1 := str(alice.Sync("", "", 0).Body, "next_batch")
	sendToDevice(bob, "m.test", "txn1", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": 1}}})
	r := alice.Sync(s1, "", 0)
	evs := toDeviceEvents(r)
	if len(evs) != 1 || evType(evs[0]) != "m.test" || str(evs[0], "sender") != bob.UserID || obj(evs[0], "content")["n"] != float64(1) {
		t.Fatalf("to-device after send: %s", r.Raw)
	}
	s2 := str(r.Body, "next_batch")
	// The response may have been lost: the old token gets the message again.
	if evs := toDeviceEvents(alice.Sync(s1, "", 0)); len(evs) != 1 {
		t.Errorf("retry with the old token: %d messages, want 1", len(evs))
	}
	r = alice.Sync(s2, "", 0)
	if evs := toDeviceEvents(r); len(evs) != 0 {
		t.Errorf("sync with the new token repeated messages: %v", evs)
	}
	s3 := str(r.Body, "next_batch")
	// Acknowledged by the sync with s2: gone even for the old token now.
	if evs := toDeviceEvents(alice.Sync(s1, "", 0)); len(evs) != 0 {
		t.Errorf("old token after the acknowledgement: %v", evs)
	}
	// Retrying the same transaction delivers nothing new.
	sendToDevice(bob, "m.test", "txn1", map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"n": 1}}})
	if evs := toDeviceEvents(alice.Sync(s3, "", 0)); len(evs) != 0 {
		t.Errorf("retried transaction delivered again: %v", evs)
	}

	// "*" reaches every device of the user; a long-poll is woken.
	s2b := str(alice2.Sync("", "", 0).Body, "next_batch")
	done := make(chan Resp, 1)
	start := time.Now()
	go func() { done <- alice.Sync(s3, "", 10000) }()
	time.Sleep(200 * time.Millisecond)
	sendToDevice(bob, "m.all", "txn2", map[string]any{alice.UserID: map[string]any{"*": map[string]any{"n": 2}}})
	r = <-done
	if evs := toDeviceEvents(r); len(evs) != 1 || evType(evs[0]) != "m.all" || time.Since(start) > 8*time.Second {
		t.Errorf("long-poll on device 1 after a * message (%v): %s", time.Since(start), r.Raw)
	}
	s4 := str(r.Body, "next_batch")
	if evs := toDeviceEvents(alice2.Sync(s2b, "", 0)); len(evs) != 1 || evType(evs[0]) != "m.all" {
		t.Errorf("device 2 after a * message: %v", evs)
	}

	// More than one response holds: the rest come with the next one, none twice.
	for i := range 130 {
		sendToDevice(bob, "m.many", fmt.Sprintf("many%d", i), map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"i": i}}})
	}
	var got []float64
	since := s4
	for range 5 {
		r := alice.Sync(since, "", 0)
		evs := toDeviceEvents(r)
		if len(evs) > 100 {
			t.Errorf("one sync returned %d to-device messages", len(evs))
		}
		for _, e := range evs {
			got = append(got, obj(e, "content")["i"].(float64))
		}
		since = str(r.Body, "next_batch")
		if len(evs) == 0 {
			break
		}
	}
	if len(got) != 130 || !slices.IsSorted(got) || got[0] != 0 || got[129] != 129 {
		t.Errorf("got %d messages in order %v, want 130 in order", len(got), got)
	}
}

// TestE2EEDeviceLists: device_lists in /sync and /keys/changes (end_to_end_encryption.md,
// "Tracking the device list for a user").
func TestE2EEDeviceLists(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	carol := srv.Register(t, "carol")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	join(bob, room)
	bs := newSyncer(bob, "")
	bs.once(0)
	b1 := bs.since
	changed := func(r Resp, key string) []any {
		l, _ := obj(r.Body, "device_lists")[key].([]any)
		return l
	}

	// Alice adds a device and uploads its keys; carol, who shares no room, too.
	alice2 := srv.Login(t, "alice")
	expectOK(t, uploadKeys(alice2, map[string]any{"device_keys": deviceKeys(t, alice2, newSigningKey(t))}), "upload")
	expectOK(t, uploadKeys(carol, map[string]any{"device_keys": deviceKeys(t, carol, newSigningKey(t))}), "upload carol")
	r := bs.until("alice in device_lists.changed", func(r Resp) bool { return slices.Contains(changed(r, "changed"), any(alice.UserID)) })
	if slices.Contains(changed(r, "changed"), any(carol.UserID)) {
		t.Errorf("carol shares no room with bob but is in changed: %s", r.Raw)
	}
	b2 := bs.since
	r = call(bob, "GET", "/_matrix/client/v3/keys/changes?from="+b1+"&to="+b2, nil)
	if l, _ := r.Body["changed"].([]any); !slices.Contains(l, any(alice.UserID)) || slices.Contains(l, any(carol.UserID)) {
		t.Errorf("/keys/changes between two tokens: %s", r.Raw)
	}
	r = call(bob, "GET", "/_matrix/client/v3/keys/changes?from="+b2+"&to="+b2, nil)
	if l, _ := r.Body["changed"].([]any); len(l) != 0 {
		t.Errorf("/keys/changes for an empty range: %s", r.Raw)
	}
	expectErr(t, call(bob, "GET", "/_matrix/client/v3/keys/changes?from=garbage&to="+b2, nil), "bad token", 400, "M_INVALID_PARAM")

	// Carol joins: bob now shares a room with her.
	join(carol, room)
	bs.until("carol in changed after joining", func(r Resp) bool { return slices.Contains(changed(r, "changed"), any(carol.UserID)) })

	// Alice deletes her second device (UIA): a change, and its keys are gone.
	r = uiaPassword(alice, "DELETE", "/_matrix/client/v3/devices/"+esc(alice2.DeviceID), nil, testPassword)
	expectOK(t, r, "delete device")
	bs.until("alice in changed after a device deletion", func(r Resp) bool { return slices.Contains(changed(r, "changed"), any(alice.UserID)) })
	q := queryKeys(bob, map[string][]string{alice.UserID: {}})
	if obj(q.Body, "device_keys", alice.UserID)[alice2.DeviceID] != nil {
		t.Errorf("keys of a deleted device are still served: %s", q.Raw)
	}

	// Alice leaves the only room she shares with bob.
	expectOK(t, call(alice, "POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}), "leave")
	r = bs.until("alice in device_lists.left", func(r Resp) bool { return slices.Contains(changed(r, "left"), any(alice.UserID)) })
	if slices.Contains(changed(r, "changed"), any(alice.UserID)) || slices.Contains(changed(r, "left"), any(carol.UserID)) {
		t.Errorf("after alice left: %s", r.Raw)
	}
}

// TestE2EECrossSigning: cross_signing.yaml uploads (UIA only to replace keys), visibility in
// /keys/query, and signatures.
func TestE2EECrossSigning(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	bob := srv.Register(t, "bob")
	carol := srv.Register(t, "carol")
	devKey := newSigningKey(t)
	expectOK(t, uploadKeys(alice, map[string]any{"device_keys": deviceKeys(t, alice, devKey)}), "upload")

	csKeys := func(c *Client, master, ssk, usk signingKey) map[string]any {
		mk := map[string]any{"user_id": c.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:" + master.pub: master.pub}}
		sk := signed(t, map[string]any{"user_id": c.UserID, "usage": []string{"self_signing"}, "keys": map[string]string{"ed25519:" + ssk.pub: ssk.pub}}, c.UserID, "ed25519:"+master.pub, master)
		uk := signed(t, map[string]any{"user_id": c.UserID, "usage": []string{"user_signing"}, "keys": map[string]string{"ed25519:" + usk.pub: usk.pub}}, c.UserID, "ed25519:"+master.pub, master)
		return map[string]any{"master_key": mk, "self_signing_key": sk, "user_signing_key": uk}
	}
	master, ssk, usk := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	const path = "/_matrix/client/v3/keys/device_signing/upload"

	// A self-signing key not signed by the master key is refused.
	bad := csKeys(alice, master, ssk, usk)
	bad["self_signing_key"] = signed(t, map[string]any{"user_id": alice.UserID, "usage": []string{"self_signing"}, "keys": map[string]string{"ed25519:" + ssk.pub: ssk.pub}}, alice.UserID, "ed25519:"+master.pub, ssk)
	expectErr(t, call(alice, "POST", path, bad), "badly signed self-signing key", 400, "M_INVALID_SIGNATURE")

	body := csKeys(alice, master, ssk, usk)
	expectOK(t, call(alice, "POST", path, body), "first cross-signing upload without UIA")
	expectOK(t, call(alice, "POST", path, body), "the same keys again without UIA")
	master2 := newSigningKey(t)
	body2 := csKeys(alice, master2, ssk, usk)
	uiaChallenge(alice, "POST", path, body2)
	expectOK(t, uiaPassword(alice, "POST", path, body2, testPassword), "replacing keys with UIA")
	master = master2

	q := queryKeys(bob, map[string][]string{alice.UserID: {}})
	if str(obj(q.Body, "master_keys", alice.UserID, "keys"), "ed25519:"+master.pub) != master.pub ||
		obj(q.Body, "self_signing_keys", alice.UserID) == nil || obj(q.Body, "user_signing_keys", alice.UserID) != nil {
		t.Errorf("bob's query of alice's cross-signing keys: %s", q.Raw)
	}
	if q := queryKeys(alice, map[string][]string{alice.UserID: {}}); obj(q.Body, "user_signing_keys", alice.UserID) == nil {
		t.Errorf("alice's own query lacks her user-signing key: %s", q.Raw)
	}

	// Alice signs her device with her self-signing key, and her master key with her device.
	devObj := obj(queryKeys(alice, map[string][]string{alice.UserID: {}}).Body, "device_keys", alice.UserID, alice.DeviceID)
	delete(devObj, "unsigned")
	sigDev := signed(t, devObj, alice.UserID, "ed25519:"+ssk.pub, ssk)
	mk := body2["master_key"]
	sigMaster := signed(t, mk, alice.UserID, "ed25519:"+alice.DeviceID, devKey)
	forged := signed(t, devObj, alice.UserID, "ed25519:"+ssk.pub, newSigningKey(t))
	r := call(alice, "POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{
		alice.UserID: map[string]any{alice.DeviceID: sigDev, master.pub: sigMaster},
	})
	if r.Status != 200 || len(obj(r.Body, "failures")) != 0 {
		t.Errorf("signature upload: %d %s", r.Status, r.Raw)
	}
	r = call(alice, "POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{alice.UserID: map[string]any{alice.DeviceID: forged}})
	if str(obj(r.Body, "failures", alice.UserID, alice.DeviceID), "errcode") != "M_INVALID_SIGNATURE" {
		t.Errorf("forged signature: %s", r.Raw)
	}
	q = queryKeys(bob, map[string][]string{alice.UserID: {}})
	if str(obj(q.Body, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID), "ed25519:"+ssk.pub) == "" ||
		str(obj(q.Body, "master_keys", alice.UserID, "signatures", alice.UserID), "ed25519:"+alice.DeviceID) == "" {
		t.Errorf("signatures missing from bob's query: %s", q.Raw)
	}

	// Bob signs alice's master key with his user-signing key: only bob sees it.
	bm, bssk, busk := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	expectOK(t, call(bob, "POST", path, csKeys(bob, bm, bssk, busk)), "bob's cross-signing keys")
	sigAlice := signed(t, mk, bob.UserID, "ed25519:"+busk.pub, busk)
	r = call(bob, "POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{alice.UserID: map[string]any{master.pub: sigAlice}})
	if r.Status != 200 || len(obj(r.Body, "failures")) != 0 {
		t.Errorf("bob's signature of alice's master key: %s", r.Raw)
	}
	if q := queryKeys(bob, map[string][]string{alice.UserID: {}}); str(obj(q.Body, "master_keys", alice.UserID, "signatures", bob.UserID), "ed25519:"+busk.pub) == "" {
		t.Errorf("bob does not see his signature: %s", q.Raw)
	}
	if q := queryKeys(carol, map[string][]string{alice.UserID: {}}); obj(q.Body, "master_keys", alice.UserID, "signatures", bob.UserID) != nil {
		t.Errorf("carol sees bob's user-signing signature: %s", q.Raw)
	}
}

// TestE2EEKeyBackup: key_backup.yaml round trip, etag and count, and the wrong-version error.
func TestE2EEKeyBackup(t *testing.T) {
	srv := StartServer(t)
	alice := srv.Register(t, "alice")
	const alg = "m.megolm_backup.v1.curve25519-aes-sha2"
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/room_keys/version", nil), "no backup yet", 404, "M_NOT_FOUND")
	r := call(alice, "POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk1"}})
	v1 := str(r.Body, "version")
	if r.Status != 200 || v1 == "" {
		t.Fatalf("create backup: %s", r.Raw)
	}
	r = call(alice, "GET", "/_matrix/client/v3/room_keys/version", nil)
	if str(r.Body, "version") != v1 || r.Body["count"] != float64(0) || str(r.Body, "etag") == "" || str(obj(r.Body, "auth_data"), "public_key") != "pk1" {
		t.Errorf("current backup: %s", r.Raw)
	}
	etag0 := str(r.Body, "etag")
	room, session := "!room:localhost", "sess1"
	keyPath := fmt.Sprintf("/_matrix/client/v3/room_keys/keys/%s/%s?version=%s", esc(room), esc(session), v1)
	data := map[string]any{"first_message_index": 1, "forwarded_count": 0, "is_verified": false, "session_data": map[string]any{"ciphertext": "c1"}}
	r = call(alice, "PUT", keyPath, data)
	if r.Status != 200 || r.Body["count"] != float64(1) || str(r.Body, "etag") == etag0 {
		t.Errorf("put key: %s", r.Raw)
	}
	r = call(alice, "GET", "/_matrix/client/v3/room_keys/keys?version="+v1, nil)
	if str(obj(r.Body, "rooms", room, "sessions", session, "session_data"), "ciphertext") != "c1" {
		t.Errorf("get all keys: %s", r.Raw)
	}
	r = call(alice, "GET", keyPath, nil)
	if r.Body["first_message_index"] != float64(1) {
		t.Errorf("get one key: %s", r.Raw)
	}
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/room_keys/keys?version=", nil), "missing version", 400, "M_MISSING_PARAM")

	// A new version becomes current: writes to the old one are refused.
	r = call(alice, "POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk2"}})
	v2 := str(r.Body, "version")
	r = call(alice, "PUT", keyPath, data)
	expectErr(t, r, "write to the old version", 403, "M_WRONG_ROOM_KEYS_VERSION")
	if str(r.Body, "current_version") != v2 {
		t.Errorf("current_version: %s, want %s", r.Raw, v2)
	}
	expectErr(t, call(alice, "PUT", "/_matrix/client/v3/room_keys/version/"+v2, map[string]any{"algorithm": "other", "auth_data": map[string]any{}}), "algorithm change", 400, "M_INVALID_PARAM")
	expectOK(t, call(alice, "PUT", "/_matrix/client/v3/room_keys/version/"+v2, map[string]any{"algorithm": alg, "auth_data": map[string]any{"public_key": "pk3"}}), "update auth_data")
	if r := call(alice, "GET", "/_matrix/client/v3/room_keys/version/"+v2, nil); str(obj(r.Body, "auth_data"), "public_key") != "pk3" {
		t.Errorf("auth_data after update: %s", r.Raw)
	}
	roomPath := fmt.Sprintf("/_matrix/client/v3/room_keys/keys/%s?version=%s", esc(room), v2)
	r = call(alice, "PUT", roomPath, map[string]any{"sessions": map[string]any{"s1": data, "s2": data}})
	if r.Body["count"] != float64(2) {
		t.Errorf("put room keys: %s", r.Raw)
	}
	r = call(alice, "DELETE", fmt.Sprintf("/_matrix/client/v3/room_keys/keys/%s/s1?version=%s", esc(room), v2), nil)
	if r.Status != 200 || r.Body["count"] != float64(1) {
		t.Errorf("delete one key: %s", r.Raw)
	}

	// Deleting a version; deleting it again succeeds.
	expectOK(t, call(alice, "DELETE", "/_matrix/client/v3/room_keys/version/"+v1, nil), "delete v1")
	expectErr(t, call(alice, "GET", "/_matrix/client/v3/room_keys/version/"+v1, nil), "deleted version", 404, "M_NOT_FOUND")
	expectOK(t, call(alice, "DELETE", "/_matrix/client/v3/room_keys/version/"+v1, nil), "delete v1 again")
	expectErr(t, call(alice, "DELETE", "/_matrix/client/v3/room_keys/version/99", nil), "unknown version", 404, "M_NOT_FOUND")
	if r := call(alice, "GET", "/_matrix/client/v3/room_keys/version", nil); str(r.Body, "version") != v2 {
		t.Errorf("current version after deleting v1: %s", r.Raw)
	}
}
