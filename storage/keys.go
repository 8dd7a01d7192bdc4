package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// oneTimeKeyUploads is the streams row that numbers /keys/upload calls, so that one-time keys
// are claimed in the order they were uploaded. It is not a sync stream.
const oneTimeKeyUploads = "one_time_key_uploads"

// DeviceKeys is the identity key object of a device (KeyJSON, as uploaded) with the device's
// display name.
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	DisplayName string
	KeyJSON     string
}

// SetDeviceKeys stores the identity keys of a device and reports whether they differ from the
// keys stored before (a device list change).
func (tx *Tx) SetDeviceKeys(ctx context.Context, userID, deviceID, keyJSON string) (bool, error) {
	var old string
	err := tx.queryRow(ctx, `SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&old)
	if err == nil && old == keyJSON {
		return false, nil
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("select device keys %s %s: %w", userID, deviceID, err)
	}
	_, err = tx.exec(ctx, `
		INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = $3`, userID, deviceID, keyJSON)
	if err != nil {
		return false, fmt.Errorf("upsert device keys %s %s: %w", userID, deviceID, err)
	}
	return true, nil
}

// DeviceKeys returns the identity keys of the user's existing devices, of all of them when
// deviceIDs is empty. Devices without uploaded keys are left out.
func (q *Q) DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error) {
	rows, err := q.query(ctx, `
		SELECT k.device_id, d.display_name, k.key_json
		FROM device_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
		WHERE k.user_id = $1 ORDER BY k.device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("select device keys %s: %w", userID, err)
	}
	defer rows.Close()
	var out []DeviceKeys
	for rows.Next() {
		k := DeviceKeys{UserID: userID}
		if err := rows.Scan(&k.DeviceID, &k.DisplayName, &k.KeyJSON); err != nil {
			return nil, err
		}
		if len(deviceIDs) == 0 || slices.Contains(deviceIDs, k.DeviceID) {
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// OneTimeKey is a one-time or fallback key: its algorithm, key ID and key object (or string).
type OneTimeKey struct {
	Algorithm string
	KeyID     string
	KeyJSON   string
}

// ErrKeyExists is returned when a one-time key ID is uploaded again with a different key.
var ErrKeyExists = errors.New("one-time key already exists with a different value")

// AddOneTimeKeys stores one-time keys of a device. Keys uploaded together share one position
// in the upload order. Re-uploading an unclaimed key unchanged is a no-op; changing it is
// ErrKeyExists.
func (tx *Tx) AddOneTimeKeys(ctx context.Context, userID, deviceID string, keys []OneTimeKey) error {
	tx.keysChanged = true
	if len(keys) == 0 {
		return nil
	}
	seq, err := tx.nextStreamPos(ctx, oneTimeKeyUploads)
	if err != nil {
		return err
	}
	for _, k := range keys {
		res, err := tx.exec(ctx, `
			INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, upload_seq, key_json)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING`,
			userID, deviceID, k.Algorithm, k.KeyID, seq, k.KeyJSON)
		if err != nil {
			return fmt.Errorf("insert one-time key %s:%s: %w", k.Algorithm, k.KeyID, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			continue
		}
		var old string
		err = tx.queryRow(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`,
			userID, deviceID, k.Algorithm, k.KeyID).Scan(&old)
		if err != nil {
			return fmt.Errorf("select one-time key %s:%s: %w", k.Algorithm, k.KeyID, err)
		}
		if old != k.KeyJSON {
			return fmt.Errorf("%w: %s:%s", ErrKeyExists, k.Algorithm, k.KeyID)
		}
	}
	return nil
}

// SetFallbackKeys replaces the fallback key of each algorithm. A key re-uploaded unchanged
// keeps its used flag; a new key is unused.
func (tx *Tx) SetFallbackKeys(ctx context.Context, userID, deviceID string, keys []OneTimeKey) error {
	tx.keysChanged = true
	for _, k := range keys {
		_, err := tx.exec(ctx, `
			INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
			VALUES ($1, $2, $3, $4, $5, FALSE)
			ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = $4, key_json = $5,
				used = CASE WHEN fallback_keys.key_id = $4 AND fallback_keys.key_json = $5 THEN fallback_keys.used ELSE FALSE END`,
			userID, deviceID, k.Algorithm, k.KeyID, k.KeyJSON)
		if err != nil {
			return fmt.Errorf("upsert fallback key %s:%s: %w", k.Algorithm, k.KeyID, err)
		}
	}
	return nil
}

// OneTimeKeyCounts returns the number of unclaimed one-time keys of a device by algorithm.
func (q *Q) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	rows, err := q.query(ctx, `
		SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2
		GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("count one-time keys %s %s: %w", userID, deviceID, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// UnusedFallbackKeyTypes returns the algorithms of the device's fallback keys not yet handed
// out by a claim.
// deviceKeys is what /sync tells a device about its keys.
type deviceKeys struct {
	counts   map[string]int
	fallback []string
}

// DeviceKeyCounts returns the device's one-time key counts by algorithm and the algorithms
// of its unused fallback keys, for /sync (cached until keys or devices are written; do not
// modify the results).
func (db *DB) DeviceKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	k := [2]string{userID, deviceID}
	v, ok, gen, err := db.keyCounts.get(ctx, &db.Q, k)
	if err != nil {
		return nil, nil, err
	} else if ok {
		return v.counts, v.fallback, nil
	}
	counts, fallback, err := db.Q.deviceKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	db.keyCounts.put(k, deviceKeys{counts: counts, fallback: fallback}, gen)
	return counts, fallback, nil
}

// deviceKeyCounts reads, in one query, the device's one-time key counts by algorithm and the
// algorithms of its unused fallback keys.
func (q *Q) deviceKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	rows, err := q.query(ctx, `
		SELECT 'otk', algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
		UNION ALL
		SELECT 'fallback', algorithm, 0 FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used`, userID, deviceID)
	if err != nil {
		return nil, nil, fmt.Errorf("count keys %s %s: %w", userID, deviceID, err)
	}
	defer rows.Close()
	counts := map[string]int{}
	fallback := []string{}
	for rows.Next() {
		var kind, alg string
		var n int
		if err := rows.Scan(&kind, &alg, &n); err != nil {
			return nil, nil, err
		}
		if kind == "otk" {
			counts[alg] = n
		} else {
			fallback = append(fallback, alg)
		}
	}
	sort.Strings(fallback)
	return counts, fallback, rows.Err()
}

func (q *Q) UnusedFallbackKeyTypes(ctx context.Context, userID, deviceID string) ([]string, error) {
	return q.strings(ctx, `SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm`, userID, deviceID)
}

// ClaimKeys claims one key per requested device (user -> device -> algorithm) in one
// transaction, as /keys/claim and federation's /user/keys/claim answer: user -> device ->
// "algorithm:key_id" -> key. Devices without a key are left out.
func (db *DB) ClaimKeys(ctx context.Context, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	claimed := map[string]map[string]map[string]json.RawMessage{}
	err := db.WithTx(ctx, func(tx *Tx) error {
		for userID, devices := range want {
			for deviceID, alg := range devices {
				k, err := tx.ClaimKey(ctx, userID, deviceID, alg)
				if errors.Is(err, ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if claimed[userID] == nil {
					claimed[userID] = map[string]map[string]json.RawMessage{}
				}
				claimed[userID][deviceID] = map[string]json.RawMessage{k.Algorithm + ":" + k.KeyID: json.RawMessage(k.KeyJSON)}
			}
		}
		return nil
	})
	return claimed, err
}

// ClaimKey hands out the oldest one-time key of the device for algorithm, deleting it, or
// when none is left the fallback key, marking it used; ErrNotFound when there is neither.
// A key is returned to exactly one caller even when claims run concurrently: of two
// transactions that pick the same key, only one deletes it, and the other picks again.
func (tx *Tx) ClaimKey(ctx context.Context, userID, deviceID, algorithm string) (*OneTimeKey, error) {
	tx.keysChanged = true
	k := OneTimeKey{Algorithm: algorithm}
	for {
		err := tx.queryRow(ctx, `
			SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
			ORDER BY upload_seq, key_id LIMIT 1`, userID, deviceID, algorithm).Scan(&k.KeyID)
		if errors.Is(err, sql.ErrNoRows) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("select one-time key %s %s: %w", userID, deviceID, err)
		}
		err = tx.queryRow(ctx, `
			DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4
			RETURNING key_json`, userID, deviceID, algorithm, k.KeyID).Scan(&k.KeyJSON)
		if errors.Is(err, sql.ErrNoRows) {
			continue // claimed by a concurrent transaction
		} else if err != nil {
			return nil, fmt.Errorf("claim one-time key %s %s: %w", userID, deviceID, err)
		}
		return &k, nil
	}
	err := tx.queryRow(ctx, `
		UPDATE fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
		RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&k.KeyID, &k.KeyJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("claim fallback key %s %s: %w", userID, deviceID, err)
	}
	return &k, nil
}

// Cross-signing key types, the key_type of cross_signing_keys.
const (
	KeyMaster      = "master"
	KeySelfSigning = "self_signing"
	KeyUserSigning = "user_signing"
)

// CrossSigningKeys returns the user's cross-signing key objects by key type.
func (q *Q) CrossSigningKeys(ctx context.Context, userID string) (map[string]string, error) {
	rows, err := q.query(ctx, `SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("select cross-signing keys %s: %w", userID, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var typ, js string
		if err := rows.Scan(&typ, &js); err != nil {
			return nil, err
		}
		out[typ] = js
	}
	return out, rows.Err()
}

// SetCrossSigningKey stores one of the user's cross-signing keys.
func (tx *Tx) SetCrossSigningKey(ctx context.Context, userID, keyType, keyJSON string) error {
	_, err := tx.exec(ctx, `
		INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = $3`, userID, keyType, keyJSON)
	if err != nil {
		return fmt.Errorf("upsert cross-signing key %s %s: %w", userID, keyType, err)
	}
	return nil
}

// KeySignature is a signature uploaded for a device key (TargetKeyID is the device ID) or a
// cross-signing key (TargetKeyID is its public key).
type KeySignature struct {
	TargetUserID string
	TargetKeyID  string
	SignerUserID string
	SignerKeyID  string // "ed25519:..."
	Signature    string
}

// AddKeySignature stores a signature, replacing one by the same signer key.
func (tx *Tx) AddKeySignature(ctx context.Context, s KeySignature) error {
	_, err := tx.exec(ctx, `
		INSERT INTO key_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = $5`,
		s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature)
	if err != nil {
		return fmt.Errorf("upsert signature of %s %s: %w", s.TargetUserID, s.TargetKeyID, err)
	}
	return nil
}

// KeySignatures returns the signatures uploaded for the keys of targetUserID.
func (q *Q) KeySignatures(ctx context.Context, targetUserID string) ([]KeySignature, error) {
	rows, err := q.query(ctx, `
		SELECT target_key_id, signer_user_id, signer_key_id, signature FROM key_signatures
		WHERE target_user_id = $1 ORDER BY target_key_id, signer_user_id, signer_key_id`, targetUserID)
	if err != nil {
		return nil, fmt.Errorf("select signatures of %s: %w", targetUserID, err)
	}
	defer rows.Close()
	var out []KeySignature
	for rows.Next() {
		s := KeySignature{TargetUserID: targetUserID}
		if err := rows.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// DeleteDeviceE2EE removes what the named devices of userID (all of them when none is named)
// hold for end-to-end encryption: identity keys, one-time and fallback keys, signatures of
// their keys, pending to-device messages and to-device transaction IDs. It records a device
// list change and returns its stream position. Call it in the transaction that deletes the
// devices (before or after DeleteDevices).
func (tx *Tx) DeleteDeviceE2EE(ctx context.Context, userID string, deviceIDs ...string) (int64, error) {
	tx.keysChanged = true
	if len(deviceIDs) == 0 {
		// Signatures are keyed by device ID or cross-signing public key: list the devices so
		// that the signatures of cross-signing keys stay.
		ids, err := tx.strings(ctx, `
			SELECT device_id FROM devices WHERE user_id = $1
			UNION SELECT device_id FROM device_keys WHERE user_id = $1`, userID)
		if err != nil {
			return 0, fmt.Errorf("list devices of %s: %w", userID, err)
		}
		for _, id := range ids {
			if _, err := tx.exec(ctx, `DELETE FROM key_signatures WHERE target_user_id = $1 AND target_key_id = $2`, userID, id); err != nil {
				return 0, fmt.Errorf("delete signatures of %s %s: %w", userID, id, err)
			}
		}
		for _, table := range []string{"device_keys", "one_time_keys", "fallback_keys", "to_device_messages", "to_device_txns"} {
			if _, err := tx.exec(ctx, `DELETE FROM `+table+` WHERE user_id = $1`, userID); err != nil {
				return 0, fmt.Errorf("delete %s of %s: %w", table, userID, err)
			}
		}
		return tx.DeviceListChanged(ctx, userID)
	}
	tables := []struct{ table, user, device string }{
		{"device_keys", "user_id", "device_id"},
		{"one_time_keys", "user_id", "device_id"},
		{"fallback_keys", "user_id", "device_id"},
		{"key_signatures", "target_user_id", "target_key_id"},
		{"to_device_messages", "user_id", "device_id"},
		{"to_device_txns", "user_id", "device_id"},
	}
	for _, t := range tables {
		for _, id := range deviceIDs {
			if _, err := tx.exec(ctx, `DELETE FROM `+t.table+` WHERE `+t.user+` = $1 AND `+t.device+` = $2`, userID, id); err != nil {
				return 0, fmt.Errorf("delete %s of %s %s: %w", t.table, userID, id, err)
			}
		}
	}
	return tx.DeviceListChanged(ctx, userID)
}

// placeholders returns "$first, $first+1, ..." for n arguments.
func placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", first+i)
	}
	return b.String()
}
