package adminapi

import (
	"context"

	"github.com/lattice-chat/lattice/appservice"
)

// AppServices reports the state of the registered application services (appservice.Server).
type AppServices interface {
	Statuses(ctx context.Context) ([]appservice.Status, error)
}

// SetAppServices gives the admin API the application services; set it before serving.
func (s *Server) SetAppServices(a AppServices) { s.appservices = a }
