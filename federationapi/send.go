package federationapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

var errNotYet = spec.Unrecognized("not implemented yet")

func (s *Server) handleSend(r *http.Request) (any, error) { return nil, errNotYet }
