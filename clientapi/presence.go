package clientapi

// presenceRoutes lists the presence endpoints.
func (s *Server) presenceRoutes() []route {
	return nil
}
