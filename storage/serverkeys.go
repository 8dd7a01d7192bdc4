package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// ServerKeyCache is the persistent cache of other homeservers' signing keys (the server_keys
// table). It implements gomatrixserverlib.KeyDatabase, the cache in front of the keyring's
// fetchers, and also keeps the servers' signed key responses for the notary endpoint.
type ServerKeyCache struct {
	db  *DB
	now func() time.Time
}

var _ gomatrixserverlib.KeyDatabase = (*ServerKeyCache)(nil)

// ServerKeyCache returns the key cache of db; now stamps the rows' fetched_ts.
func (db *DB) ServerKeyCache(now func() time.Time) *ServerKeyCache {
	return &ServerKeyCache{db: db, now: now}
}

// FetcherName implements gomatrixserverlib.KeyFetcher.
func (c *ServerKeyCache) FetcherName() string { return "server_keys cache" }

// FetchKeys returns the cached keys among those requested, whatever their validity: the
// keyring decides what is still good and refetches the rest. It implements
// gomatrixserverlib.KeyFetcher.
func (c *ServerKeyCache) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	out := make(map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, len(requests))
	for req := range requests {
		var key string
		var res gomatrixserverlib.PublicKeyLookupResult
		err := c.db.queryRow(ctx, `
			SELECT key, valid_until_ts, expired_ts FROM server_keys WHERE server_name = $1 AND key_id = $2`,
			string(req.ServerName), string(req.KeyID),
		).Scan(&key, &res.ValidUntilTS, &res.ExpiredTS)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("select server key %s %s: %w", req.ServerName, req.KeyID, err)
		}
		if err := res.Key.Decode(key); err != nil {
			return nil, fmt.Errorf("server key %s %s: %w", req.ServerName, req.KeyID, err)
		}
		out[req] = res
	}
	return out, nil
}

// StoreKeys adds or updates keys in the cache; a stored response_json is kept. It
// implements gomatrixserverlib.KeyDatabase.
func (c *ServerKeyCache) StoreKeys(ctx context.Context, results map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult) error {
	if len(results) == 0 {
		return nil
	}
	now := c.now().UnixMilli()
	return c.db.WithTx(ctx, func(tx *Tx) error {
		for req, res := range results {
			if err := tx.upsertServerKey(ctx, req, res, now, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// StoreServerKeys caches every key of a server's own signed key response together with the
// response itself. The caller has checked the response (gomatrixserverlib.CheckKeys).
func (c *ServerKeyCache) StoreServerKeys(ctx context.Context, keys gomatrixserverlib.ServerKeys) error {
	now := c.now().UnixMilli()
	raw := string(keys.Raw)
	return c.db.WithTx(ctx, func(tx *Tx) error {
		for id, k := range keys.VerifyKeys {
			req := gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}
			res := gomatrixserverlib.PublicKeyLookupResult{VerifyKey: k, ValidUntilTS: keys.ValidUntilTS}
			if err := tx.upsertServerKey(ctx, req, res, now, &raw); err != nil {
				return err
			}
		}
		for id, k := range keys.OldVerifyKeys {
			req := gomatrixserverlib.PublicKeyLookupRequest{ServerName: keys.ServerName, KeyID: id}
			res := gomatrixserverlib.PublicKeyLookupResult{VerifyKey: k.VerifyKey, ExpiredTS: k.ExpiredTS}
			if err := tx.upsertServerKey(ctx, req, res, now, &raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// upsertServerKey writes one key. valid_until_ts never moves back (a stale copy of a
// response, say from a notary, must not shorten a fresher one), and response_json is
// replaced only when raw is given.
func (tx *Tx) upsertServerKey(ctx context.Context, req gomatrixserverlib.PublicKeyLookupRequest, res gomatrixserverlib.PublicKeyLookupResult, now int64, raw *string) error {
	_, err := tx.exec(ctx, `
		INSERT INTO server_keys (server_name, key_id, key, valid_until_ts, expired_ts, fetched_ts, response_json)
		VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, ''))
		ON CONFLICT (server_name, key_id) DO UPDATE SET
			key = EXCLUDED.key,
			valid_until_ts = CASE WHEN EXCLUDED.valid_until_ts > server_keys.valid_until_ts
				THEN EXCLUDED.valid_until_ts ELSE server_keys.valid_until_ts END,
			expired_ts = EXCLUDED.expired_ts,
			fetched_ts = EXCLUDED.fetched_ts,
			response_json = COALESCE($7, server_keys.response_json)`,
		string(req.ServerName), string(req.KeyID), res.Key.Encode(), int64(res.ValidUntilTS), int64(res.ExpiredTS), now, raw)
	if err != nil {
		return fmt.Errorf("upsert server key %s %s: %w", req.ServerName, req.KeyID, err)
	}
	return nil
}

// LatestServerKeyResponse returns the cached signed key response of serverName that carried
// its longest-valid current key, or ErrNotFound. Callers read the validity from the response
// itself.
func (c *ServerKeyCache) LatestServerKeyResponse(ctx context.Context, serverName spec.ServerName) ([]byte, error) {
	var js string
	err := c.db.queryRow(ctx, `
		SELECT response_json FROM server_keys
		WHERE server_name = $1 AND response_json <> '' AND expired_ts = 0
		ORDER BY valid_until_ts DESC, fetched_ts DESC LIMIT 1`, string(serverName),
	).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("select key response of %s: %w", serverName, err)
	}
	return []byte(js), nil
}
