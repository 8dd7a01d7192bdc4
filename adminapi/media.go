package adminapi

// Media: info, quarantine, protect, delete, purge of the remote cache, media of a room.
func (s *Server) mediaRoutes() []route {
	return nil
}
