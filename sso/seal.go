package sso

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// sealer seals cookie values with AES-GCM: a sealed value can be neither read nor altered
// without the key, and each names its purpose, so one kind of cookie is never taken for
// another.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) *sealer {
	block, err := aes.NewCipher(key[:32])
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &sealer{aead: aead}
}

var errBadSeal = errors.New("sso: cookie missing, altered or expired")

// seal encodes v (which must carry its own expiry) for purpose.
func (s *sealer) seal(purpose string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, plain, []byte(purpose))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// open decodes a value sealed for purpose into v.
func (s *sealer) open(purpose, sealed string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return errBadSeal
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(purpose))
	if err != nil {
		return errBadSeal
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errBadSeal
	}
	return nil
}

// setCookie sets a sealed, HTTP-only, SameSite=Lax cookie: Lax, because the provider sends
// the browser back with a top-level GET from its own site.
func (s *Service) setCookie(w http.ResponseWriter, name, path, purpose string, v any, ttl time.Duration) error {
	val, err := s.seal.seal(purpose, v)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: val, Path: path, MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
	return nil
}

// clearCookie removes a cookie set by setCookie.
func (s *Service) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
}

// readCookie opens the sealed cookie name of r into v.
func (s *Service) readCookie(r *http.Request, name, purpose string, v any) error {
	c, err := r.Cookie(name)
	if err != nil {
		return errBadSeal
	}
	return s.seal.open(purpose, c.Value, v)
}
