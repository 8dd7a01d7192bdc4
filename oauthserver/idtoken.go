package oauthserver

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
)

// OpenID Connect ID tokens: the OAuth 2.0 API needs none, but matrix-js-sdk (Element Web)
// asks for the openid scope and refuses a token response without an ID token, and looks
// up the signing keys (jwks_uri) when it discovers the server. The ID token is an RS256 JWT
// (RFC 7519) naming the user (sub) for the client (aud).

const pathKeys = "/_lattice/oauth2/keys.json"

// signingKey is the RSA key of the ID tokens with its key ID.
type signingKey struct {
	key *rsa.PrivateKey
	kid string
}

// SigningKey returns the ID tokens' key, kept in data_dir/oauth_signing_key.pem and made on
// first use. Several processes behind one load balancer need the same file.
func SigningKey(cfg *config.Config) (*rsa.PrivateKey, error) {
	path := filepath.Join(cfg.DataDir, "oauth_signing_key.pem")
	raw, err := os.ReadFile(path)
	if err == nil {
		block, _ := pem.Decode(raw)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an RSA key", path)
		}
		return rk, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return k, nil
}

func newSigningKey(k *rsa.PrivateKey) *signingKey {
	if k == nil {
		return nil
	}
	sum := sha256.Sum256(k.N.Bytes())
	return &signingKey{key: k, kid: base64.RawURLEncoding.EncodeToString(sum[:9])}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public key as a JSON Web Key (RFC 7517).
func (k *signingKey) jwk() map[string]string {
	return map[string]string{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid,
		"n": b64(k.key.N.Bytes()), "e": b64(big.NewInt(int64(k.key.E)).Bytes())}
}

// idToken signs an ID token for userID and the client.
func (k *signingKey) idToken(issuer, clientID, userID, nonce string, now time.Time) (string, error) {
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": k.kid})
	claims := map[string]any{"iss": issuer, "sub": userID, "aud": clientID, "iat": now.Unix(), "auth_time": now.Unix(),
		"exp": now.Add(time.Hour).Unix()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	body, _ := json.Marshal(claims)
	signed := b64(header) + "." + b64(body)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signed + "." + b64(sig), nil
}

// handleKeys handles GET on jwks_uri: the public key of the ID tokens.
func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	httputil.WriteJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{s.signer.jwk()}})
}
