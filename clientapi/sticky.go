package clientapi

import (
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/roomserver"
)

// stickyParam is the query parameter of PUT /send that makes the event sticky for that many
// milliseconds: MSC4354's sticky_duration_ms under its unstable prefix, which matrix-js-sdk
// sends.
const stickyParam = "org.matrix.msc4354.sticky_duration_ms"

// stickyOf returns the sticky duration of r in milliseconds, and whether r asks for one. A
// duration must be a non-negative integer; one above an hour is capped to an hour, the MSC's
// longest stickiness.
func stickyOf(r *http.Request) (int64, bool, error) {
	v, ok := r.URL.Query()[stickyParam]
	if !ok {
		return 0, false, nil
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms < 0 {
		return 0, true, spec.InvalidParam(stickyParam + " must be a non-negative integer number of milliseconds")
	}
	return min(ms, roomserver.MaxStickyMS), true, nil
}
