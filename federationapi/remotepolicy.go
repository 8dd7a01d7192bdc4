package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrix"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
)

// PolicySign implements roomserver.Remote: it asks a room's policy server to sign an event
// (POST /_matrix/policy/v1/sign) and returns the signature; a refusal (400 M_FORBIDDEN and
// the like) comes back as the policy server's spec.MatrixError.
func (r *remote) PolicySign(ctx context.Context, server spec.ServerName, event gomatrixserverlib.PDU) (string, error) {
	what := fmt.Sprintf("policy server %s signing %s", server, event.EventID())
	answer, err := r.s.postRaw(ctx, server, "/_matrix/policy/v1/sign", json.RawMessage(event.JSON()))
	if err != nil {
		// The spec: the policy server's error goes to the client verbatim.
		var he gomatrix.HTTPError
		var me spec.MatrixError
		if errors.As(err, &he) && he.Code >= 400 && he.Code < 500 && json.Unmarshal(he.Contents, &me) == nil && me.ErrCode != "" {
			return "", me
		}
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return roomserver.PolicySignature(answer, server)
}
