package clientapi

// typingRoutes lists the typing notification endpoint.
func (s *Server) typingRoutes() []route {
	return nil
}
