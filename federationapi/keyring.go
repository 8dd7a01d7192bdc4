package federationapi

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// newKeyRing returns the keyring that verifies other servers' signatures: keys come from the
// server_keys cache, else straight from the server (/_matrix/key/v2/server, then its own
// notary endpoint), and fetched keys are cached. Our own key comes from memory.
func (s *Server) newKeyRing() *gomatrixserverlib.KeyRing {
	pub := s.cfg.PrivateKey.Public().(ed25519.PublicKey)
	isLocal := func(name spec.ServerName) bool { return name == s.cfg.ServerName }
	return &gomatrixserverlib.KeyRing{
		KeyDatabase: &keyDatabase{
			serverName: s.cfg.ServerName, keyID: s.cfg.KeyID, public: spec.Base64Bytes(pub),
			validity: s.cfg.KeyValidity, now: s.cfg.Now, cache: s.keys,
		},
		KeyFetchers: []gomatrixserverlib.KeyFetcher{
			&gomatrixserverlib.DirectKeyFetcher{Client: s.fetcher, IsLocalServerName: isLocal, LocalPublicKey: spec.Base64Bytes(pub)},
		},
	}
}

// keyDatabase answers lookups of our own key from memory and everything else from the
// persistent cache. Our key is never written to the cache.
type keyDatabase struct {
	serverName spec.ServerName
	keyID      gomatrixserverlib.KeyID
	public     spec.Base64Bytes
	validity   time.Duration
	now        func() time.Time
	cache      *storage.ServerKeyCache
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (d *keyDatabase) FetcherName() string { return "own key and " + d.cache.FetcherName() }

// FetchKeys implements gomatrixserverlib.KeyFetcher.
func (d *keyDatabase) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	remote := make(map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp, len(requests))
	own := map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult{}
	for req, ts := range requests {
		switch {
		case req.ServerName != d.serverName:
			remote[req] = ts
		case req.KeyID == d.keyID:
			own[req] = gomatrixserverlib.PublicKeyLookupResult{
				VerifyKey:    gomatrixserverlib.VerifyKey{Key: d.public},
				ValidUntilTS: spec.AsTimestamp(d.now().Add(d.validity)),
			}
		}
	}
	res, err := d.cache.FetchKeys(ctx, remote)
	if err != nil {
		return nil, err
	}
	for req, r := range own {
		res[req] = r
	}
	return res, nil
}

// StoreKeys implements gomatrixserverlib.KeyDatabase.
func (d *keyDatabase) StoreKeys(ctx context.Context, results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	remote := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, len(results))
	for req, r := range results {
		if req.ServerName != d.serverName {
			remote[req] = r
		}
	}
	return d.cache.StoreKeys(ctx, remote)
}

// recordingKeyClient fetches server keys with the federation client and caches every valid
// signed response a server gives about itself, so that the notary endpoint can serve it with
// the server's signature, also when the server is offline later.
type recordingKeyClient struct {
	client gomatrixserverlib.KeyClient
	cache  *storage.ServerKeyCache
	now    func() time.Time
	log    *slog.Logger
}

// GetServerKeys implements gomatrixserverlib.KeyClient.
func (k *recordingKeyClient) GetServerKeys(ctx context.Context, server spec.ServerName) (gomatrixserverlib.ServerKeys, error) {
	keys, err := k.client.GetServerKeys(ctx, server)
	if err != nil {
		k.log.Warn("cannot fetch server keys", "destination", string(server), "err", err)
		return keys, err
	}
	if checks, _ := gomatrixserverlib.CheckKeys(server, k.now(), keys); checks.AllChecksOK {
		if err := k.cache.StoreServerKeys(ctx, keys); err != nil {
			k.log.Error("cannot cache server keys", "destination", string(server), "err", err)
		}
	} else {
		k.log.Warn("invalid server key response", "destination", string(server))
	}
	return keys, nil
}

// LookupServerKeys implements gomatrixserverlib.KeyClient.
func (k *recordingKeyClient) LookupServerKeys(ctx context.Context, server spec.ServerName, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) ([]gomatrixserverlib.ServerKeys, error) {
	return k.client.LookupServerKeys(ctx, server, requests)
}
