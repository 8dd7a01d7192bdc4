package oauthserver

import (
	"errors"
	"strings"
)

// Scope tokens (Client-Server API, "Allocated scope tokens"), with the unstable names of
// MSC2967 that clients still send.
const (
	scopeAPI                  = "urn:matrix:client:api:*"
	scopeDevicePrefix         = "urn:matrix:client:device:"
	scopeAPIUnstable          = "urn:matrix:org.matrix.msc2967.client:api:*"
	scopeDevicePrefixUnstable = "urn:matrix:org.matrix.msc2967.client:device:"
)

// scopeOpenID asks for an OpenID Connect ID token beside the tokens (matrix-js-sdk asks
// for it and checks the ID token).
const scopeOpenID = "openid"

// grantScope is what a scope grants: full Client-Server API access for one device, and an
// ID token with openid.
type grantScope struct {
	DeviceID string
	OpenID   bool
	Granted  string // the scope tokens understood, as granted (in the client's spelling)
}

// parseScope reads a requested scope: it must ask for the Client-Server API and exactly one
// device. Tokens this server does not know are left out of the granted scope.
func parseScope(scope string) (*grantScope, error) {
	var g grantScope
	var api bool
	var granted []string
	for _, tok := range strings.Fields(scope) {
		switch {
		case tok == scopeOpenID:
			g.OpenID = true
			granted = append(granted, tok)
		case tok == scopeAPI || tok == scopeAPIUnstable:
			api = true
			granted = append(granted, tok)
		case strings.HasPrefix(tok, scopeDevicePrefix) || strings.HasPrefix(tok, scopeDevicePrefixUnstable):
			if g.DeviceID != "" {
				return nil, errors.New("exactly one device scope token is allowed")
			}
			id := strings.TrimPrefix(strings.TrimPrefix(tok, scopeDevicePrefix), scopeDevicePrefixUnstable)
			if !validDeviceID(id) {
				return nil, errors.New("the device ID must be 1 to 255 unreserved characters")
			}
			g.DeviceID = id
			granted = append(granted, tok)
		}
	}
	if !api {
		return nil, errors.New("the scope must include " + scopeAPI)
	}
	if g.DeviceID == "" {
		return nil, errors.New("the scope must include one " + scopeDevicePrefix + "<device_id> token")
	}
	g.Granted = strings.Join(granted, " ")
	return &g, nil
}

// validDeviceID: RFC 3986 unreserved characters, which the spec asks clients to use.
func validDeviceID(id string) bool {
	if len(id) == 0 || len(id) > 255 {
		return false
	}
	for _, c := range id {
		ok := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.ContainsRune("-._~", c)
		if !ok {
			return false
		}
	}
	return true
}

// sessionScope is the scope of an existing session, for the answer of a refresh.
func sessionScope(deviceID string) string {
	return scopeAPI + " " + scopeDevicePrefix + deviceID
}
