package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/federationapi"
	"github.com/lattice-chat/lattice/internal/netguard"
)

// testCA is a certificate authority made for one test: the servers' federation listeners
// get certificates from it and trust it through federation.tls_ca.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
	pemPath string
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Lattice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), pemPath: filepath.Join(t.TempDir(), "ca.pem")}
	ca.pool.AddCert(cert)
	if err := os.WriteFile(ca.pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue returns a PEM certificate and key for 127.0.0.1 and localhost signed by the CA.
func (ca *testCA) issue(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		// 127.0.0.2: a server whose host differs from the others' (server ACLs ignore ports).
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// startFederatedServer starts a server named 127.0.0.1:PORT whose federation listener is on
// that port with a certificate from ca, trusting ca for outbound federation. The TLS
// settings are not generate-config flags, so the first start's configuration is edited and
// the server restarted.
func startFederatedServer(t testing.TB, ca *testCA) *Server {
	t.Helper()
	name := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := StartServer(t, WithServerName(name), WithFederation(name))
	s.Stop()
	useTestCA(t, s, ca)
	s.Start()
	return s
}

// serverSigningKey reads a server's ed25519 signing key file.
func serverSigningKey(t *testing.T, s *Server) (gomatrixserverlib.KeyID, ed25519.PrivateKey) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.DataDir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw))
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[2], "="))
	if err != nil || len(f) != 3 {
		t.Fatalf("signing key %q: %v", raw, err)
	}
	return gomatrixserverlib.KeyID("ed25519:" + f[1]), ed25519.NewKeyFromSeed(seed)
}

// fedGet fetches a federation URL of s over TLS, trusting only the test CA.
func fedGet(t *testing.T, client *http.Client, s *Server, path string) []byte {
	t.Helper()
	resp, err := client.Get("https://" + s.Name + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

// fakeOrigin is a homeserver played by the test: a TLS server (certificate from the CA)
// that serves only its key response, so that servers can verify requests it signs.
type fakeOrigin struct {
	name  spec.ServerName
	keyID gomatrixserverlib.KeyID
	priv  ed25519.PrivateKey
}

func startFakeOrigin(t *testing.T, ca *testCA) *fakeOrigin {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	o := &fakeOrigin{keyID: "ed25519:fake", priv: priv}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/key/v2/server" {
			http.NotFound(w, r)
			return
		}
		js, _ := json.Marshal(gomatrixserverlib.ServerKeyFields{
			ServerName:    o.name,
			VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{o.keyID: {Key: spec.Base64Bytes(priv.Public().(ed25519.PublicKey))}},
			OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
			ValidUntilTS:  spec.AsTimestamp(time.Now().Add(time.Hour)),
		})
		signed, _ := gomatrixserverlib.SignJSON(string(o.name), o.keyID, priv, js)
		w.Header().Set("Content-Type", "application/json")
		w.Write(signed)
	}))
	certPEM, keyPEM := ca.issue(t)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	o.name = spec.ServerName(srv.Listener.Addr().String())
	return o
}

func TestFederation(t *testing.T) {
	ca := newTestCA(t)
	a := startFederatedServer(t, ca)
	b := startFederatedServer(t, ca)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	bKeyID, bKey := serverSigningKey(t, b)
	aKeyID, aKey := serverSigningKey(t, a)
	bPub, aPub := bKey.Public().(ed25519.PublicKey), aKey.Public().(ed25519.PublicKey)

	t.Run("server keys", func(t *testing.T) {
		var keys gomatrixserverlib.ServerKeys
		if err := json.Unmarshal(fedGet(t, client, b, "/_matrix/key/v2/server"), &keys); err != nil {
			t.Fatal(err)
		}
		checks, verified := gomatrixserverlib.CheckKeys(spec.ServerName(b.Name), time.Now(), keys)
		if !checks.AllChecksOK || !bytes.Equal(verified[bKeyID], bPub) {
			t.Fatalf("B's key response fails the checks: %+v %s", checks, keys.Raw)
		}
	})

	t.Run("notary", func(t *testing.T) {
		body := fedGet(t, client, a, "/_matrix/key/v2/query/"+b.Name)
		var resp struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		if err := json.Unmarshal(body, &resp); err != nil || len(resp.ServerKeys) != 1 {
			t.Fatalf("A's notary response for B: %s (%v)", body, err)
		}
		if err := gomatrixserverlib.VerifyJSON(b.Name, bKeyID, bPub, resp.ServerKeys[0]); err != nil {
			t.Errorf("not signed by B: %v", err)
		}
		if err := gomatrixserverlib.VerifyJSON(a.Name, aKeyID, aPub, resp.ServerKeys[0]); err != nil {
			t.Errorf("not signed by A: %v", err)
		}
	})

	t.Run("signed profile query", func(t *testing.T) {
		bob := b.Register(t, "bob")
		bob.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob B"})
		origin := startFakeOrigin(t, ca)
		fc, err := federationapi.NewClient(federationapi.ClientConfig{
			ServerName: origin.name, KeyID: origin.keyID, PrivateKey: origin.priv, VerifyTLS: true, RootCAs: ca.pool,
			Guard: &netguard.Policy{}, // the zero policy: B is on loopback
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, err := fc.QueryProfile(ctx, spec.ServerName(b.Name), bob.UserID)
		if err != nil || p.DisplayName != "Bob B" {
			t.Fatalf("profile of bob through B's federation API: %+v, %v", p, err)
		}

		// The same request signed with another key under the origin's key ID.
		_, forged, _ := ed25519.GenerateKey(rand.Reader)
		fr := fclient.NewFederationRequest("GET", origin.name, spec.ServerName(b.Name),
			"/_matrix/federation/v1/query/profile?user_id="+esc(bob.UserID))
		if err := fr.Sign(origin.name, origin.keyID, forged); err != nil {
			t.Fatal(err)
		}
		req, err := fr.HTTPRequest()
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Scheme, req.URL.Host = "https", b.Name
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 401 || body["errcode"] != "M_UNAUTHORIZED" {
			t.Fatalf("forged signature: %d %v, want 401 M_UNAUTHORIZED", resp.StatusCode, body)
		}
	})
}

// TestFederationDisabled: without federation_api.listen there is no federation listener
// (and no certificate is made for one).
func TestFederationDisabled(t *testing.T) {
	s := StartServer(t)
	if !strings.Contains(s.Log(), "lattice started") {
		t.Fatalf("no start line in the log:\n%s", s.Log())
	}
	if strings.Contains(s.Log(), "federation_api") {
		t.Errorf("a federation listener started:\n%s", s.Log())
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "federation-tls.crt")); err == nil {
		t.Error("a federation certificate was created with federation off")
	}
}
