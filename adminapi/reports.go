package adminapi

// Event reports: list, details, delete.
func (s *Server) reportRoutes() []route {
	return nil
}
