package adminapi

// Registration tokens: list, create, get, update, delete.
func (s *Server) registrationTokenRoutes() []route {
	return nil
}
