package adminapi

// Rooms: list, details, members, state, messages, timestamp to event, forward extremities, delete (v1 and v2, async), block, make room admin, join a user, event context; purge history.
func (s *Server) roomRoutes() []route {
	return nil
}
