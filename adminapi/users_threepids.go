package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Third-party IDs (e-mail addresses, phone numbers) and external (single sign-on) IDs of
// accounts: set with PUT /v2/users/{userId}, shown by GET /v2/users/{userId}, and looked up
// with the two routes below (Synapse's user_admin_api.md, "Find a user based on ...").

// threePIDRoutes are the lookups; userRoutes lists them.
func (s *Server) threePIDRoutes() []route {
	return []route{
		{http.MethodGet, "/v1/threepid/{medium}/users/{address}", s.handleUserByThreePID, false},
		{http.MethodGet, "/v1/auth_providers/{provider}/users/{externalId}", s.handleUserByExternalID, false},
	}
}

// threePIDRequest and externalIDRequest are the items of PUT /v2/users' threepids and
// external_ids.
type threePIDRequest struct {
	Medium  *string `json:"medium"`
	Address *string `json:"address"`
}

type externalIDRequest struct {
	AuthProvider *string `json:"auth_provider"`
	ExternalID   *string `json:"external_id"`
}

// idLists are the lists of PUT /v2/users once checked: nil for one not given.
type idLists struct {
	threePIDs   []storage.ThreePID
	externalIDs []storage.ExternalID
}

// checkIDs checks the threepids and external_ids of a PUT /v2/users body and returns them
// canonical and without duplicates.
func checkIDs(threePIDs *[]threePIDRequest, externalIDs *[]externalIDRequest) (idLists, error) {
	var out idLists
	if threePIDs != nil {
		out.threePIDs = []storage.ThreePID{}
		seen := map[[2]string]bool{}
		for _, t := range *threePIDs {
			if t.Medium == nil || t.Address == nil || *t.Medium == "" || *t.Address == "" {
				return out, spec.MissingParam("each threepid needs a medium and an address")
			}
			addr, err := storage.CanonicalThreePID(*t.Medium, *t.Address)
			if err != nil {
				return out, spec.InvalidParam("threepid: " + err.Error())
			}
			if k := [2]string{*t.Medium, addr}; !seen[k] {
				seen[k] = true
				out.threePIDs = append(out.threePIDs, storage.ThreePID{Medium: *t.Medium, Address: addr})
			}
		}
	}
	if externalIDs != nil {
		out.externalIDs = []storage.ExternalID{}
		seen := map[storage.ExternalID]bool{}
		for _, e := range *externalIDs {
			if e.AuthProvider == nil || e.ExternalID == nil || *e.AuthProvider == "" || *e.ExternalID == "" {
				return out, spec.MissingParam("each external_id needs an auth_provider and an external_id")
			}
			id := storage.ExternalID{AuthProvider: *e.AuthProvider, ExternalID: *e.ExternalID}
			if !seen[id] {
				seen[id] = true
				out.externalIDs = append(out.externalIDs, id)
			}
		}
	}
	return out, nil
}

// checkIDsFree answers 409 when an identifier of ids is bound to an account other than
// userID, before anything of the account changes (setIDs checks again in its transaction).
func (s *Server) checkIDsFree(ctx context.Context, userID string, ids idLists) error {
	for _, t := range ids.threePIDs {
		owner, err := s.db.UserByThreePID(ctx, t.Medium, t.Address)
		if err == nil && owner != userID {
			return idInUse(storage.ErrThreePIDInUse)
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	for _, e := range ids.externalIDs {
		owner, err := s.db.UserByExternalID(ctx, e.AuthProvider, e.ExternalID)
		if err == nil && owner != userID {
			return idInUse(storage.ErrExternalIDInUse)
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	return nil
}

// setIDs replaces the lists given in ids, in the transaction that creates or changes the
// account.
func setIDs(ctx context.Context, tx *storage.Tx, userID string, ids idLists) error {
	if ids.threePIDs != nil {
		if err := tx.SetThreePIDs(ctx, userID, ids.threePIDs, time.Now().UnixMilli()); err != nil {
			return idInUse(err)
		}
	}
	if ids.externalIDs != nil {
		if err := tx.SetExternalIDs(ctx, userID, ids.externalIDs); err != nil {
			return idInUse(err)
		}
	}
	return nil
}

// idInUse maps the storage errors of an identifier bound elsewhere to Synapse's answers:
// 409 M_THREEPID_IN_USE for a third-party ID, 409 (M_UNKNOWN) for an external ID.
func idInUse(err error) error {
	switch {
	case errors.Is(err, storage.ErrThreePIDInUse):
		return httputil.Errorf(http.StatusConflict, "M_THREEPID_IN_USE", "Threepid already in use")
	case errors.Is(err, storage.ErrExternalIDInUse):
		return httputil.Errorf(http.StatusConflict, "M_UNKNOWN", "External id is already in use.")
	}
	return err
}

// userDetails is GET /v2/users/{userId}'s answer, with the account's identifiers.
func (s *Server) userDetails(ctx context.Context, u *storage.User) (map[string]any, error) {
	m := userJSON(u)
	tps, err := s.db.ThreePIDs(ctx, u.UserID)
	if err != nil {
		return nil, err
	}
	exts, err := s.db.ExternalIDs(ctx, u.UserID)
	if err != nil {
		return nil, err
	}
	threePIDs := make([]map[string]any, 0, len(tps))
	for _, t := range tps {
		threePIDs = append(threePIDs, map[string]any{"medium": t.Medium, "address": t.Address,
			"added_at": t.AddedAt, "validated_at": t.ValidatedAt})
	}
	externalIDs := make([]map[string]any, 0, len(exts))
	for _, e := range exts {
		externalIDs = append(externalIDs, map[string]any{"auth_provider": e.AuthProvider, "external_id": e.ExternalID})
	}
	m["threepids"], m["external_ids"] = threePIDs, externalIDs
	return m, nil
}

// handleUserByThreePID handles GET /v1/threepid/{medium}/users/{address}.
func (s *Server) handleUserByThreePID(r *http.Request) (any, error) {
	medium := httputil.PathVar(r, "medium")
	addr, err := storage.CanonicalThreePID(medium, httputil.PathVar(r, "address"))
	if err != nil {
		return nil, spec.NotFound("User not found") // nothing can be bound to it
	}
	return s.userIDAnswer(s.db.UserByThreePID(r.Context(), medium, addr))
}

// handleUserByExternalID handles GET /v1/auth_providers/{provider}/users/{externalId}.
func (s *Server) handleUserByExternalID(r *http.Request) (any, error) {
	return s.userIDAnswer(s.db.UserByExternalID(r.Context(), httputil.PathVar(r, "provider"), httputil.PathVar(r, "externalId")))
}

func (s *Server) userIDAnswer(userID string, err error) (any, error) {
	if errors.Is(err, storage.ErrNotFound) {
		return nil, spec.NotFound("User not found")
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"user_id": userID}, nil
}
